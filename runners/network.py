"""Host networking for containers: the public face of :mod:`runners.net`.

pyroute2 does every netlink change (links, addresses, routes, namespaces); nftables
rules are generated as text by a pure function and applied through libnftables (or
``nft -f -`` where the library is missing).

A host has a bridge whose address is its containers' gateway; each container gets a
named network namespace (:func:`create_container_netns`, whose path runc joins), a veth
pair into it with an address from the host's :class:`Ipam`
(:func:`attach_container`), and optionally published ports (:func:`publish_port`), all
of which go away with :func:`detach_container`, :func:`unpublish_port`,
:func:`remove_container_netns` and :meth:`Ipam.release`.
"""

from __future__ import annotations

from runners.net.errors import AddressesExhausted, InvalidNetworkInput, PortInUse
from runners.net.hostnet import (
    DEFAULT_BRIDGE,
    HostNetwork,
    load_host_network,
    setup_host_network,
    teardown_host_network,
    write_host_network,
)
from runners.net.ipam import Ipam, IpamState, parse_subnet
from runners.net.links import (
    VethPair,
    add_route,
    attach_container,
    create_bridge,
    delete_bridge,
    delete_link,
    detach_container,
    link_exists,
    link_names,
    networks_in_use,
)
from runners.net.names import (
    container_netns_name,
    hashed_ifname,
    host_veth_name,
    netns_path,
    validate_ifname,
)
from runners.net.namespaces import (
    create_container_netns,
    create_netns,
    list_netns,
    netns_exists,
    nsenter_argv,
    pids_in_netns,
    remove_container_netns,
    remove_netns,
)
from runners.net.nftables import (
    DEFAULT_TABLE,
    PublishedPort,
    render_nft_ruleset,
    run_nft,
    table_names,
)
from runners.net.nsthread import in_netns, set_sysctl
from runners.net.ports import (
    install_host_table,
    port_listening,
    publish_port,
    published_ports,
    remove_host_table,
    unpublish_port,
)

__all__ = [
    "DEFAULT_BRIDGE",
    "DEFAULT_TABLE",
    "AddressesExhausted",
    "HostNetwork",
    "InvalidNetworkInput",
    "Ipam",
    "IpamState",
    "PortInUse",
    "PublishedPort",
    "VethPair",
    "add_route",
    "attach_container",
    "container_netns_name",
    "create_bridge",
    "create_container_netns",
    "create_netns",
    "delete_bridge",
    "delete_link",
    "detach_container",
    "hashed_ifname",
    "host_veth_name",
    "in_netns",
    "install_host_table",
    "link_exists",
    "link_names",
    "list_netns",
    "load_host_network",
    "netns_exists",
    "netns_path",
    "networks_in_use",
    "nsenter_argv",
    "parse_subnet",
    "pids_in_netns",
    "port_listening",
    "publish_port",
    "published_ports",
    "remove_container_netns",
    "remove_host_table",
    "remove_netns",
    "render_nft_ruleset",
    "run_nft",
    "set_sysctl",
    "setup_host_network",
    "table_names",
    "teardown_host_network",
    "unpublish_port",
    "validate_ifname",
    "write_host_network",
]
