#!/usr/bin/env bash
# The source checks (make test runs them during its set-up, once the build is done, beside the Go
# builds and downloads): the generated code is current, then import cycles, the tests' types, lint and
# format side by side (each is one busy process; two cores).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p logs

echo "== generated code is current"
npm run -s -w @ptw/proto check

# The others read the sources only.
checks=(
  "no import cycles:check:cycles"
  "tests type-check:typecheck:tests"
  "lint (eslint, type-aware):lint"
  "format (prettier --check):format:check"
)
check_pids=()
for c in "${checks[@]}"; do
  script=${c#*:}
  npm run -s "$script" > "logs/check-${script//:/-}.log" 2>&1 &
  check_pids+=($!)
done
check_failed=0
for i in "${!checks[@]}"; do
  c=${checks[$i]}
  script=${c#*:}
  echo "== ${c%%:*}"
  if ! wait "${check_pids[$i]}"; then check_failed=1; fi
  cat "logs/check-${script//:/-}.log"
done
[ "$check_failed" = 0 ] || { echo "a check failed (above)" >&2; exit 1; }
