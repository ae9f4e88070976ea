"""``berth agent``: run this host's agent (the same options as ``python -m runners.agent``)."""

from __future__ import annotations

from pathlib import Path

import click

from pipeline.errors import BerthError

DEFAULT_DATA = Path("/var/lib/berth/agent")


@click.command()
@click.option(
    "--data",
    type=click.Path(file_okay=False, path_type=Path),
    default=DEFAULT_DATA,
    show_default=True,
    help="State directory: images, layers, containers, instance records.",
)
@click.option(
    "--listen",
    multiple=True,
    metavar="ADDR",
    help="unix:/PATH, tcp://ADDR:PORT or tcp://[IPV6]:PORT (repeatable)"
    " [default: unix:DATA/agent.sock].",
)
@click.option(
    "--token-file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Bearer token TCP callers must send (required with a tcp:// listener).",
)
@click.option("--tls-cert", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("--tls-key", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("--host-name", default="", help="This host's name [default: the hostname].")
@click.option("--label", multiple=True, metavar="KEY=VALUE", help="Host label (repeatable).")
@click.option(
    "--runtime",
    type=click.Choice(["auto", "runc", "crun"]),
    default="auto",
    show_default=True,
    help="OCI runtime; auto is crun where installed, else runc.",
)
@click.option(
    "--network", type=click.Choice(["bridge", "isolated"]), default="bridge", show_default=True
)
@click.option("--subnet", help="Container subnet of this host [default: 10.88.0.0/24].")
@click.option("--bridge", help="Bridge name [default: berth0].")
@click.option("--nft-table", help="nftables table for published ports [default: berth].")
@click.option(
    "--id-shift",
    default="100000:100000:65536",
    show_default=True,
    help="Host uid:gid[:size] container root maps to, or 'none'.",
)
@click.option("--insecure-registry", multiple=True, metavar="HOST", help="Plain-HTTP registry.")
@click.pass_obj
def agent(
    obj: object,
    data: Path,
    listen: tuple[str, ...],
    token_file: Path | None,
    tls_cert: Path | None,
    tls_key: Path | None,
    host_name: str,
    label: tuple[str, ...],
    runtime: str,
    network: str,
    subnet: str | None,
    bridge: str | None,
    nft_table: str | None,
    id_shift: str,
    insecure_registry: tuple[str, ...],
) -> None:
    """Run this host's agent until SIGTERM; its containers keep running when it stops."""
    from runners.agent.launch import AgentOptions, parse_labels, run_agent

    verbosity = getattr(obj, "verbosity", 0)
    try:
        options = AgentOptions(
            data=data.absolute(),
            listen=listen,
            token_file=token_file,
            tls_cert=tls_cert,
            tls_key=tls_key,
            host_name=host_name,
            labels=parse_labels(label),
            runtime=runtime,
            network=network,
            subnet=subnet,
            bridge=bridge,
            nft_table=nft_table,
            id_shift=id_shift,
            insecure_registries=insecure_registry,
            verbose=verbosity > 0,
        )
    except ValueError as exc:
        raise BerthError(str(exc)) from exc
    run_agent(options)
