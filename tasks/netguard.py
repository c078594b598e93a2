"""Which addresses image downloads may reach.

Image URLs come from search results, so anybody can point one at a private service (a cloud metadata
endpoint, an admin page on the LAN). Names are checked before a request, and the address each connection
actually reached is checked again before a byte is sent: a name that resolves to a public address when
checked and to a private one when connecting (DNS rebinding) is refused as well. Networks an operator
trusts (an internal image mirror) are allowed by name.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from typing import Any

import urllib3
from urllib3.connection import HTTPConnection, HTTPSConnection

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class PrivatePeer(Exception):
    """A connection reached an address downloads may not use. Not an OSError, so urllib3 does not retry it."""


def parse_networks(text: str) -> tuple[Network, ...]:
    """'10.1.0.0/16, 192.168.5.7' → networks; ValueError names the entry that is not one."""
    networks = []
    for entry in (part.strip() for part in text.split(",")):
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ValueError(f"{entry!r} is not an IP address or network (expected e.g. 10.1.0.0/16)") from None
    return tuple(networks)


def address_allowed(text: str, trusted: Iterable[Network] = ()) -> bool:
    address = ipaddress.ip_address(text.split("%")[0])
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:  # ::ffff:127.0.0.1 is loopback
        address = address.ipv4_mapped
    if any(address in network for network in trusted):
        return True
    # is_global also leaves out shared (100.64/10, where a cloud may keep its metadata service) and
    # documentation ranges, which is_private does not.
    return address.is_global and not address.is_multicast


def host_allowed(host: str, trusted: Iterable[Network] = ()) -> bool:
    """False when any address of host is off limits. Raises socket.gaierror/UnicodeError when it does not resolve."""
    trusted = tuple(trusted)
    infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    return all(address_allowed(str(info[4][0]), trusted) for info in infos)


class _PeerCheck:
    trusted: tuple[Network, ...] = ()

    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()  # type: ignore[misc]
        peer = str(sock.getpeername()[0])
        if not address_allowed(peer, self.trusted):
            sock.close()
            raise PrivatePeer(f"connected to {peer}, a private address")
        return sock


def guard_connections(pool: urllib3.PoolManager, trusted: tuple[Network, ...]) -> None:
    """Make every connection `pool` opens check the address it reached (the pool's own classes, subclassed)."""
    attributes: dict[str, Any] = {"trusted": trusted}
    http_conn = type("GuardedHTTPConnection", (_PeerCheck, HTTPConnection), attributes)
    https_conn = type("GuardedHTTPSConnection", (_PeerCheck, HTTPSConnection), attributes)
    pool.pool_classes_by_scheme = {
        "http": type("GuardedHTTPPool", (urllib3.HTTPConnectionPool,), {"ConnectionCls": http_conn}),
        "https": type("GuardedHTTPSPool", (urllib3.HTTPSConnectionPool,), {"ConnectionCls": https_conn}),
    }
