"""Requests relayed by a load balancer: who the client is and which URL it used.

Behind nginx or an ingress, the connection comes from the proxy, so without help the audit log
and the login throttle would see one client (the proxy) for everyone, and a proxy that
terminates TLS would make the token realm and the web UI's same-origin check say ``http``.
Proxies report the original client, scheme and host in ``X-Forwarded-For``/``-Proto``/``-Host``,
but any client can send those headers too, so they count only on connections from an address in
``trusted_proxies``; from anyone else they are ignored.

The client is found as nginx's realip module finds it with ``real_ip_recursive``: walking
``X-Forwarded-For`` from the right (the entry the nearest proxy added), past every trusted
address, to the first one that is not. What a client wrote into the header itself sits to the
left of that and is never believed; an entry that does not parse ends the walk where it is
rather than failing the request (a client can put anything there, and nginx passes it on).
aiohttp-remotes has the header parsing but either ignores the connection's own peer or rejects
any request that does not arrive through exactly the configured chain, hence these few lines.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable

from aiohttp import web

from dockyard.api.errors import Handler

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_HOST = re.compile(r"^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+)(?::\d{1,5})?$")


def _address(text: str) -> Address | None:
    try:
        ip = ipaddress.ip_address(text.strip().split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _last(request: web.Request, header: str) -> str | None:
    """The value the nearest proxy set: the last one, when several were joined or repeated."""
    values = request.headers.getall(header, [])
    if not values:
        return None
    return values[-1].rsplit(",", 1)[-1].strip() or None


class TrustedProxies:
    def __init__(self, trusted: Iterable[str]) -> None:
        self.networks: list[Network] = [ipaddress.ip_network(t, strict=False) for t in trusted]

    def trusts(self, ip: Address | None) -> bool:
        return ip is not None and any(ip in network for network in self.networks)

    def client(self, peer: Address, forwarded_for: list[str]) -> Address:
        """The first untrusted address walking back from the peer (the peer itself is trusted)."""
        client = peer
        entries = [e for value in forwarded_for for e in value.split(",")]
        for entry in reversed(entries):
            ip = _address(entry)
            if ip is None:
                break
            client = ip
            if not self.trusts(ip):
                break
        return client

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        peername = request.transport.get_extra_info("peername") if request.transport is not None else None
        peer = _address(str(peername[0])) if isinstance(peername, tuple) else None
        if peer is None or not self.trusts(peer):
            return await handler(request)
        changes: dict[str, str] = {}
        client = self.client(peer, request.headers.getall("X-Forwarded-For", []))
        if client != peer:
            changes["remote"] = str(client)
        proto = (_last(request, "X-Forwarded-Proto") or "").lower()
        if proto in ("http", "https"):
            changes["scheme"] = proto
        host = _last(request, "X-Forwarded-Host")
        if host and _HOST.match(host):
            changes["host"] = host
        return await handler(request.clone(**changes) if changes else request)
