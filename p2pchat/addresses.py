"""The addresses to tell others when listening on a wildcard (``0.0.0.0`` or ``::``).

``ws://0.0.0.0:9100`` means nothing on another machine. A peer listening on every
interface advertises the machine's real interface addresses instead, read from
the kernel (``SIOCGIFADDR`` per interface on Linux; the host name's addresses
elsewhere). Nothing is sent on the network to find them.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import socket
import struct
import sys

__all__ = ["interface_addresses", "is_wildcard", "ws_urls"]

SIOCGIFADDR = 0x8915


def is_wildcard(host: str) -> bool:
    return host in ("0.0.0.0", "::", "")


def interface_addresses(ipv6: bool = False) -> list[str]:
    """This machine's interface addresses (IPv4, or IPv6 without link-local ones),
    non-loopback first, loopback last."""
    found: list[str] = []
    if sys.platform.startswith("linux"):
        found = _linux_ipv6_addresses() if ipv6 else _linux_addresses()
    if not found:
        with contextlib.suppress(OSError):
            family = socket.AF_INET6 if ipv6 else socket.AF_INET
            infos = socket.getaddrinfo(socket.gethostname(), None, family)
            found = [str(info[4][0]) for info in infos]
    unique = [a for a in dict.fromkeys(found) if not ipaddress.ip_address(a).is_link_local]
    unique.sort(key=lambda a: ipaddress.ip_address(a).is_loopback)
    return unique or (["::1"] if ipv6 else ["127.0.0.1"])


def _linux_ipv6_addresses() -> list[str]:
    """From /proc/net/if_inet6: one line per address, the address as 32 hex digits first."""
    try:
        with open("/proc/net/if_inet6", encoding="ascii") as table:
            return [
                str(ipaddress.IPv6Address(bytes.fromhex(line.split()[0]))) for line in table if line.strip()
            ]
    except (OSError, ValueError):
        return []


def _linux_addresses() -> list[str]:
    addresses = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        for _, name in socket.if_nameindex():
            request = struct.pack("256s", name.encode()[:15])
            try:
                reply = fcntl.ioctl(probe.fileno(), SIOCGIFADDR, request)
            except OSError:
                continue  # an interface without an IPv4 address
            addresses.append(socket.inet_ntoa(reply[20:24]))
    return addresses


def ws_urls(host: str, port: int) -> list[str]:
    """The ws:// URLs others can dial for a listener on ``host:port``, best first."""
    if not is_wildcard(host):
        return [_url(host, port)]
    return [_url(address, port) for address in interface_addresses(ipv6=host == "::")]


def _url(host: str, port: int) -> str:
    return f"ws://[{host}]:{port}" if ":" in host else f"ws://{host}:{port}"
