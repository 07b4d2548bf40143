#!/usr/bin/env bash
# Every test in one run (called by `make test`, after build and store): the generated-code check,
# then unit, component and end-to-end suites in one jest run, and a closing summary line.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== generated code is current"
npm run -s -w @ptw/proto check

echo "== no import cycles"
npm run -s check:cycles

echo "== tests type-check"
npm run -s typecheck:tests

mkdir -p logs
echo "== jest (unit, component, end-to-end)"
status=0
npx jest --runInBand --json --outputFile=logs/jest-results.json "$@" || status=$?
node -e '
const r = require("./logs/jest-results.json");
console.log(`tests: ${r.numPassedTests} passed, ${r.numFailedTests} failed` + (r.numPendingTests ? `, ${r.numPendingTests} skipped` : ""));
if (r.numTotalTests === 0) { console.error("no test ran"); process.exit(1); }
'
exit $status
