"""Which network addresses the mesh may send requests to on a caller's say-so (fetch tool, push webhooks).

Every address a host resolves to must be public; private, loopback,
link-local, multicast, unspecified and reserved addresses are refused unless
they lie in one of the ``allowed`` networks mesh.yaml names.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class AddressRefused(ValueError):
    """The host cannot be resolved or resolves to an address that is not allowed; the message says which."""


def address_kind(address: IPAddress) -> str:
    """Why an address is not public: loopback, link-local, private, multicast, unspecified, reserved."""
    for kind in ("loopback", "link_local", "private", "multicast", "unspecified", "reserved"):
        if getattr(address, f"is_{kind}"):
            return kind.replace("_", "-")
    return "non-public"


def address_allowed(address: IPAddress, allowed: Iterable[IPNetwork] = ()) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    if address.is_global and not address.is_multicast:
        return True
    return any(address in network for network in allowed)


async def resolve_allowed(host: str, port: int, allowed: Iterable[IPNetwork] = (), hint: str = "allowed_networks") -> str:
    """The address to connect to: every address of ``host`` must be allowed, and the first is used."""
    allowed = list(allowed)
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise AddressRefused(f"cannot resolve {host}: {exc.strerror}") from None
    addresses = list(dict.fromkeys(info[4][0] for info in infos))
    for text in addresses:
        address = ipaddress.ip_address(text.split("%")[0])
        if not address_allowed(address, allowed):
            raise AddressRefused(f"{host} resolves to {text}, a {address_kind(address)} address: refused (allow its "
                                 f"network in {hint} if this is intended)")
    return addresses[0]
