#!/usr/bin/env bash
# node_modules for the Makefile (docs/testing.md "Install: what each target needs"):
#   npm-deps.sh run   what `make up` and `make build` need: the dependencies (the services' packages, and
#                     TypeScript with the @types it compiles against); npm ci --omit=dev, about half of the
#                     packages and of npm's CPU on a fresh machine (docs/benchmarks.md "Build and CI times")
#   npm-deps.sh all   everything (jest, eslint, prettier, the benches' tools): the test targets
# A full install serves both (and is made again, not narrowed, when the lock changes); a runtime-only one
# is replaced by a full one when a test target asks.
# Every package's install script runs except the deprecated `grpc` addon's (grpc-mock's, used by the
# gateway's component tests only; ~4 min from source), which `make grpc-mock` builds. npm ci wipes
# node_modules, and with it both markers and grpc-mock's.
set -euo pipefail
cd "$(dirname "$0")/../.."

mode=${1:-run}
full=node_modules/.ptw-installed
runtime=node_modules/.ptw-runtime
current() { [ -e "$1" ] && [ "$1" -nt package-lock.json ] && [ "$1" -nt package.json ]; }

case $mode in
  all) current "$full" && exit 0 ;;
  run) { current "$full" || current "$runtime"; } && exit 0 ;;
  *) echo "usage: $0 run|all" >&2; exit 2 ;;
esac
# A checkout that had everything (a developer's, after the lock changed) gets everything again: only a
# new clone, or one that never ran a test target, installs the dependencies alone.
if [ "$mode" = run ] && [ -e "$full" ]; then mode=all; fi

if [ "$mode" = all ]; then npm ci --ignore-scripts; else npm ci --ignore-scripts --omit=dev; fi
# The installed packages that have an install script, except grpc.
scripted=$(node -p '
  const fs = require("fs");
  const pkgs = Object.entries(require("./package-lock.json").packages);
  [...new Set(pkgs.filter(([k, v]) => v.hasInstallScript && k && !k.endsWith("node_modules/grpc") && fs.existsSync(k)).map(([k]) => k.replace(/.*node_modules\//, "")))].join(" ")
')
# shellcheck disable=SC2086 # a list of package names
[ -z "$scripted" ] || npm rebuild $scripted
if [ "$mode" = all ]; then touch "$full"; fi
touch "$runtime"
