#!/usr/bin/env bash
# Proves the repository stands alone: clones HEAD into an empty temporary folder with no sibling
# folders (no ../shared, no ../node_modules), installs with `npm ci` and runs the smoke steps there
# (npm start + a completion + /metrics, trace stats and an offline replay of the in-repo trace).
# Usage: bash scripts/clean-clone-check.sh   (run by .ci/run after npm test)
set -euo pipefail
src="$(cd "$(dirname "$0")/.." && pwd)"
parent="$(mktemp -d)"
trap 'rm -rf "$parent"' EXIT
git clone -q "$src" "$parent/mockfleet"
if [ "$(ls -A "$parent")" != "mockfleet" ]; then
  echo "clean-clone-check: $parent is not empty besides the clone" >&2
  exit 1
fi
cd "$parent/mockfleet"
refs=$(grep -rnIE '\.\./shared|/work/' src workers bench scripts test README.md package.json | grep -v '^scripts/clean-clone-check.sh:' || true)
if [ -n "$refs" ]; then
  echo "clean-clone-check: the repository refers to paths outside itself:" >&2
  echo "$refs" | head -20 >&2
  exit 1
fi
npm ci --no-audit --no-fund --loglevel=error
npm run -s build
node scripts/run-tests.mjs unit >"$parent/unit.log" 2>&1 || { tail -50 "$parent/unit.log"; echo "clean-clone-check: unit tests failed in the clean clone" >&2; exit 1; }
echo "clean-clone-check: unit tests pass in the clean clone ($(grep -E "^tests: " "$parent/unit.log" | tail -1 | sed "s/^tests: //"))"
node scripts/smoke.mjs
echo "clean-clone-check: the repository works from an empty folder"
