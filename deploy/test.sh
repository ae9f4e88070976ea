#!/usr/bin/env bash
# Sets everything up (deploy/setup.sh), then runs berth's whole test suite: unit,
# integration and privileged tests (the last need root; they fail, never skip, without it),
# followed by the static checks (ruff, mypy --strict). Prints the suite's run time.
# Extra arguments go to pytest, e.g. `bash deploy/test.sh -m unit`.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
bash deploy/setup.sh

start=$(date +%s)
status=0
.venv/bin/python -m pytest -p no:cacheprovider "$@" || status=$?
echo "== static checks"
.venv/bin/ruff check pipeline runners tests || status=1
.venv/bin/ruff format --check pipeline runners tests || status=1
.venv/bin/mypy || status=1
end=$(date +%s)
echo "== test suite finished in $((end - start)) s (exit status $status)"
exit "$status"
