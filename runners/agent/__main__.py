"""``python -m runners.agent --data DIR --listen unix:PATH --listen tcp://ADDR:PORT ...``

The same options as ``berth agent``; see :mod:`runners.agent.launch`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from runners.agent.launch import DEFAULT_SHIFT, NETWORK_KINDS, AgentOptions, parse_labels, run_agent
from runners.errors import RunnerError


def parse_args(argv: Sequence[str] | None = None) -> AgentOptions:
    parser = argparse.ArgumentParser(
        prog="python -m runners.agent", description="Run the berth agent of this host."
    )
    parser.add_argument("--data", required=True, type=Path, help="State directory.")
    parser.add_argument(
        "--listen",
        action="append",
        default=[],
        help="unix:/PATH or tcp://ADDR:PORT (repeatable) [default: unix:DATA/agent.sock].",
    )
    parser.add_argument("--token-file", type=Path, help="Bearer token TCP callers must send.")
    parser.add_argument("--tls-cert", type=Path, help="Certificate for TCP listeners.")
    parser.add_argument("--tls-key", type=Path, help="Key of --tls-cert.")
    parser.add_argument("--host-name", default="", help="This host's name [default: hostname].")
    parser.add_argument("--label", action="append", default=[], help="KEY=VALUE (repeatable).")
    parser.add_argument("--runtime", choices=("auto", "runc", "crun"), default="auto")
    parser.add_argument("--network", choices=NETWORK_KINDS, default="bridge")
    parser.add_argument("--subnet", help="Container subnet of this host (bridge network).")
    parser.add_argument("--bridge", help="Bridge name (bridge network).")
    parser.add_argument("--nft-table", help="nftables table for published ports.")
    parser.add_argument("--id-shift", default=DEFAULT_SHIFT, help="UID:GID[:SIZE] or none.")
    parser.add_argument(
        "--insecure-registry", action="append", default=[], help="Plain-HTTP registry host."
    )
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    return AgentOptions(
        data=args.data,
        listen=tuple(args.listen),
        token_file=args.token_file,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        host_name=args.host_name,
        labels=parse_labels(args.label),
        runtime=args.runtime,
        network=args.network,
        subnet=args.subnet,
        bridge=args.bridge,
        nft_table=args.nft_table,
        id_shift=args.id_shift,
        insecure_registries=tuple(args.insecure_registry),
        verbose=args.verbose,
    )


def main(argv: Sequence[str] | None = None) -> int:
    try:
        run_agent(parse_args(argv))
    except RunnerError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
