#!/usr/bin/env bash
# Every test in one run (called by `make test`, after build and store): the generated-code check,
# then the unit, component, end-to-end and browser suites, and a closing summary line.
set -euo pipefail
cd "$(dirname "$0")/.."

mkdir -p logs
# grpc-mock's native addon (only the gateway's component suites use it) takes minutes to build from
# source: it builds in the background while the checks and the e2e suites run (Makefile: grpc-mock).
# Only with node_modules current: a stale marker would have make run npm ci under the running checks.
make -s -q node_modules/.ptw-installed || { echo "node_modules is not current: run make test (or make deps) first" >&2; exit 1; }
make -s grpc-mock > logs/grpc-mock-build.log 2>&1 &
grpc_mock_build=$!

echo "== generated code is current"
npm run -s -w @ptw/proto check

echo "== no import cycles"
npm run -s check:cycles

echo "== tests type-check"
npm run -s typecheck:tests

echo "== lint (eslint, type-aware)"
npm run -s lint

echo "== format (prettier --check)"
npm run -s format:check

# Jest in phases by what the suites need (jest.config.js, docs/testing.md): e2e in parallel workers (each
# suite its own stack on free ports and its own database), except the make-up-* suites, which take make
# up's fixed ports and run one at a time; then unit and component in parallel workers (the gateway's
# component suites need grpc-mock's build, done by then); browser suites last, in parallel workers too.
# Each phase writes logs/jest-<phase>.json; logs/jest-results.json merges them (per-suite times).
workers=${JEST_WORKERS:-2}
status=0
phase() {
  local name=$1; shift
  echo "== jest: $name"
  rm -f "logs/jest-$name.json"
  npx jest "$@" --passWithNoTests --json --outputFile="logs/jest-$name.json" || status=1
}
phase e2e --selectProjects e2e --testPathIgnorePatterns /make-up- --maxWorkers="$workers" "$@"
phase make-up test/e2e/make-up- --selectProjects e2e --runInBand "$@"
echo "== grpc-mock's native build"
if ! wait "$grpc_mock_build"; then
  tail -n 30 logs/grpc-mock-build.log
  echo "grpc-mock's native build failed (logs/grpc-mock-build.log): the gateway's component suites cannot run" >&2
  status=1
fi
phase unit-component --selectProjects unit component --maxWorkers="$workers" "$@"
phase browser --selectProjects browser --maxWorkers="$workers" "$@"
node -e '
const fs = require("fs");
const runs = ["unit-component", "e2e", "make-up", "browser"].map((p) => `logs/jest-${p}.json`).filter((f) => fs.existsSync(f)).map((f) => JSON.parse(fs.readFileSync(f, "utf8")));
const sum = (k) => runs.reduce((n, r) => n + r[k], 0);
const r = { success: runs.every((x) => x.success), startTime: Math.min(...runs.map((x) => x.startTime)) };
for (const k of ["numTotalTestSuites", "numPassedTestSuites", "numFailedTestSuites", "numTotalTests", "numPassedTests", "numFailedTests", "numPendingTests", "numTodoTests"]) r[k] = sum(k);
r.testResults = runs.flatMap((x) => x.testResults);
fs.writeFileSync("logs/jest-results.json", JSON.stringify(r));
console.log(`tests: ${r.numPassedTests} passed, ${r.numFailedTests} failed` + (r.numPendingTests ? `, ${r.numPendingTests} skipped` : ""));
if (r.numTotalTests === 0) { console.error("no test ran"); process.exit(1); }
'
exit $status
