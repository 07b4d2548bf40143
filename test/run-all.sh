#!/usr/bin/env bash
# Every suite in one run (called by `make test`, after its set-up, which ran test/checks.sh too): the
# end-to-end, unit, component, browser and grpc-mock suites, and a closing summary line.
set -euo pipefail
cd "$(dirname "$0")/.."

mkdir -p logs
# grpc-mock's native addon (only the gateway's grpc-mock suites use it) takes ~130 s of CPU to build
# from source: it builds in the background at the lowest CPU priority, so it takes only what set-up and
# the suites leave idle (the make-up and browser phases leave ~110 s of it), and its suites run last.
# `make test` starts it during its set-up; run alone, this starts it (Makefile: grpc-mock-background).
# Only with node_modules current: a stale marker would have make run npm ci under the running suites.
make -s -q node_modules/.ptw-installed || { echo "node_modules is not current: run make test (or make deps) first" >&2; exit 1; }
[ -f logs/grpc-mock-build.started ] || make -s grpc-mock-background NPM_DEPS=all
# The next run (make test or this script alone) starts its own build step again.
trap 'rm -f logs/grpc-mock-build.started' EXIT

# Jest in phases by what the suites need (jest.config.js, docs/testing.md): e2e in parallel workers (each
# suite its own stack on free ports and its own database), except the make-up-* suites, which take make
# up's fixed ports and run one at a time; then unit and component in parallel workers, but the gateway's
# grpc-mock suites; the browser suites, in parallel workers too; last the grpc-mock suites, once its
# native build has finished. Each phase writes logs/jest-<phase>.json; logs/jest-results.json merges them
# (per-suite times).
workers=${JEST_WORKERS:-2}
grpc_mock_suites='(.*/)?gateway/src/(gateway|admin|openapi/admin-routes)\.component\.test\.ts$'
status=0
phase() {
  local name=$1; shift
  echo "== jest: $name"
  rm -f "logs/jest-$name.json"
  npx jest "$@" --passWithNoTests --json --outputFile="logs/jest-$name.json" || status=1
}
phase e2e --selectProjects e2e --testPathIgnorePatterns /make-up- --maxWorkers="$workers" "$@"
phase make-up test/e2e/make-up- --selectProjects e2e --runInBand "$@"
# (A path pattern, not --testPathIgnorePatterns: that would replace the unit project's own ignore list.)
phase unit-component --selectProjects unit component --testPathPatterns "^(?!$grpc_mock_suites)" --maxWorkers="$workers" "$@"
phase browser --selectProjects browser --maxWorkers="$workers" "$@"
echo "== grpc-mock's native build"
until [ -f logs/grpc-mock-build.status ]; do sleep 1; done
if [ "$(cat logs/grpc-mock-build.status)" != 0 ]; then
  tail -n 30 logs/grpc-mock-build.log
  echo "grpc-mock's native build failed (logs/grpc-mock-build.log): the gateway's grpc-mock suites cannot run" >&2
  status=1
fi
phase grpc-mock --selectProjects component --testPathPatterns "^$grpc_mock_suites" --maxWorkers="$workers" "$@"
node -e '
const fs = require("fs");
const runs = ["unit-component", "e2e", "make-up", "browser", "grpc-mock"].map((p) => `logs/jest-${p}.json`).filter((f) => fs.existsSync(f)).map((f) => JSON.parse(fs.readFileSync(f, "utf8")));
const sum = (k) => runs.reduce((n, r) => n + r[k], 0);
const r = { success: runs.every((x) => x.success), startTime: Math.min(...runs.map((x) => x.startTime)) };
for (const k of ["numTotalTestSuites", "numPassedTestSuites", "numFailedTestSuites", "numTotalTests", "numPassedTests", "numFailedTests", "numPendingTests", "numTodoTests"]) r[k] = sum(k);
r.testResults = runs.flatMap((x) => x.testResults);
fs.writeFileSync("logs/jest-results.json", JSON.stringify(r));
console.log(`tests: ${r.numPassedTests} passed, ${r.numFailedTests} failed` + (r.numPendingTests ? `, ${r.numPendingTests} skipped` : ""));
if (r.numTotalTests === 0) { console.error("no test ran"); process.exit(1); }
'
exit $status
