#!/usr/bin/env bash
# The README's first command: set everything up, then run the whole flow on this machine
# with `berth up` (config/berth.yml): a simulated cluster of 5 hosts, the control plane
# with its embedded registry, and the demo app (deploy/demo) rolling out to dev.
# It prints the dashboard URL and what to try next; stop it with Ctrl-C (or `berth down`
# in another terminal). Extra arguments go to `berth up`, e.g. --exit-when-healthy.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
bash deploy/setup.sh
exec .venv/bin/berth up "$@"
