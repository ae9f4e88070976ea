#!/usr/bin/env bash
# The README's first command: set everything up, then run berth's main job on the
# embedded default (config/berth.yml): the control plane with its state store and the
# embedded OCI registry. Stop it with Ctrl-C. Extra arguments go to `berth serve`.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
bash deploy/setup.sh

cat <<'TEXT'

berth is starting with config/berth.yml. In another terminal, try:
  .venv/bin/berth --help
  curl -s http://127.0.0.1:8420/healthz
  .venv/bin/berth config check config/berth.yml
  skopeo copy --dest-tls-verify=false docker-archive:IMAGE.tar docker://127.0.0.1:8420/demo:1
  .venv/bin/berth image tags 127.0.0.1:8420/demo

TEXT
exec .venv/bin/berth serve --config config/berth.yml "$@"
