"""``python -m pipeline.rollout``: the rollout engine alone, on a simulated cluster.

Runs the engine's background reconcile against a state store, a service config and a
cluster made by ``berth cluster up``, until SIGTERM or SIGINT. ``berth serve`` runs the
same engine inside the control plane; this runner exists for operating the engine by
itself (and for killing it with ``kill -9`` in tests)::

    python -m pipeline.rollout --store sqlite:///berth.db --config berth.yml \\
        --cluster /var/lib/berth/cluster --registry 10.240.0.1:5000
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from pipeline.errors import BerthError
from pipeline.rollout.entry import EntryAddresses
from pipeline.rollout.hosts import HostDirectory
from pipeline.rollout.nftrouter import NftRouter
from pipeline.rollout.service import RolloutService
from pipeline.settings import load_settings
from pipeline.store import Store
from pipeline.store.releases import Release
from runners.clusterstate import HOSTS_FILE


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.rollout", description=__doc__)
    parser.add_argument("--store", required=True, help="State store URL.")
    parser.add_argument("--config", required=True, type=Path, help="Service config (berth.yml).")
    parser.add_argument("--cluster", required=True, type=Path, help="Cluster data directory.")
    parser.add_argument("--registry", required=True, help="HOST:PORT images are pulled from.")
    parser.add_argument("--interval", type=float, default=0.5, help="Seconds between passes.")
    parser.add_argument(
        "--standby",
        type=float,
        default=30.0,
        help="Seconds the previous release stays running after a rollout, for fast rollback.",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    registry = str(args.registry)

    def image_reference(release: Release) -> str:
        return f"{registry}/{release.app}@{release.digest}"

    try:
        settings = load_settings(args.config)
        store = Store.open(args.store)
        hosts = HostDirectory.from_hosts_file(args.cluster / HOSTS_FILE)
        service = RolloutService(
            store,
            settings,
            hosts,
            NftRouter(),
            image_reference=image_reference,
            entries=EntryAddresses.for_cluster(args.cluster),
            standby=args.standby,
        )
    except BerthError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    done = threading.Event()

    def finish(signum: int, frame: FrameType | None) -> None:
        done.set()

    signal.signal(signal.SIGTERM, finish)
    signal.signal(signal.SIGINT, finish)
    service.start_background(args.interval)
    print("rollout engine running", flush=True)
    done.wait()
    service.stop()
    hosts.close()
    store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
