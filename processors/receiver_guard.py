"""Outbound safety for webhook receivers: their URLs come from API users, so a
receiver must not be a way into agent-relay's own network (loopback services, the
private network, the cloud's metadata endpoint).

The check is made where the socket is opened, on the address that is connected to:
the receiver's host is resolved once, every address it resolves to is checked, and
the connection goes to a checked address (never to the name, which a second lookup
could answer differently: DNS rebinding). TLS still names the host, so SNI and the
certificate check are those of the URL's host name.

Written here rather than taken from a library: of the packages found, advocate wraps
`requests` (and is unmaintained since 2020), safehttpx checks GET URLs against a
public DNS before the request, and those that pin the checked address under httpx
(drawbridge, httpx-secure, ssrfguard) are young single-author packages with little
use. aiohttp's public resolver seam (under httpx-aiohttp, as every outbound client
here: agent.http.new_http_client) keeps the guard this module's size.

WEBHOOK_ALLOW_PRIVATE_NETWORKS=true turns the guard off (a receiver on the same host
or network, as in tests and some deployments).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Sequence

import aiohttp
import httpx
from aiohttp.abc import AbstractResolver, ResolveResult
from httpx_aiohttp import AiohttpTransport

from agent.http import new_http_client
from db.job_kinds import PermanentJobError

ALLOW_SETTING = "WEBHOOK_ALLOW_PRIVATE_NETWORKS"

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# (host, port) -> the addresses the host resolves to, as IP strings.
Resolver = Callable[[str, int], Awaitable[Sequence[str]]]
# (checked address, port) -> where the connection goes instead (tests only).
ConnectTo = Callable[[str, int], tuple[str, int]]
# How long a receiver's name may take to resolve.
RESOLVE_SECONDS = 5.0


def _networks(
    *pairs: tuple[str, str],
) -> list[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str]]:
    return [(ipaddress.ip_network(network), label) for network, label in pairs]


# What is refused, by name, rather than `not is_global`: the stdlib's tables changed
# between Python patch releases (3.11.7 calls multicast "global"), and the message
# should say which kind of address was refused. Anything not listed here and still
# not globally routable by the stdlib is refused too (see `refusal_reason`).
_BLOCKED_IPV4 = _networks(
    ("0.0.0.0/8", "unspecified"),  # 0.0.0.0 reaches this host on Linux
    ("10.0.0.0/8", "private, RFC 1918"),
    ("100.64.0.0/10", "shared, RFC 6598"),  # carrier-grade NAT; Alibaba's metadata too
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local"),  # 169.254.169.254: most clouds' metadata
    ("172.16.0.0/12", "private, RFC 1918"),
    ("192.0.0.0/24", "reserved, IETF protocol assignments"),
    ("192.0.2.0/24", "reserved, documentation"),
    ("192.88.99.0/24", "reserved, 6to4 relay anycast"),
    ("192.168.0.0/16", "private, RFC 1918"),
    ("198.18.0.0/15", "reserved, benchmarking"),
    ("198.51.100.0/24", "reserved, documentation"),
    ("203.0.113.0/24", "reserved, documentation"),
    ("224.0.0.0/4", "multicast"),
    ("240.0.0.0/4", "reserved or broadcast"),
)
_BLOCKED_IPV6 = _networks(
    ("::/128", "unspecified"),
    ("::1/128", "loopback"),
    ("::/96", "reserved, IPv4-compatible"),
    ("64:ff9b:1::/48", "reserved, local-use NAT64"),
    ("100::/64", "reserved, discard-only"),
    ("2001::/32", "reserved, Teredo"),  # a tunnel to an IPv4 address
    ("2001::/23", "reserved, IETF protocol assignments"),
    ("2001:db8::/32", "reserved, documentation"),
    ("3fff::/20", "reserved, documentation"),
    ("fc00::/7", "unique local, private"),  # AWS's IPv6 metadata, fd00:ec2::254, too
    ("fe80::/10", "link-local"),
    ("fec0::/10", "site-local, private"),
    ("ff00::/8", "multicast"),
)
# IPv6 forms that carry an IPv4 address a translator or tunnel would reach: they
# are judged by that IPv4 address, so ::ffff:127.0.0.1 is loopback.
_NAT64_WELL_KNOWN = ipaddress.ip_network("64:ff9b::/96")


def _embedded_ipv4(address: ipaddress.IPv6Address) -> tuple[ipaddress.IPv4Address, str] | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped, "IPv4-mapped"
    if address in _NAT64_WELL_KNOWN:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF), "NAT64"
    if address.sixtofour is not None:
        return address.sixtofour, "6to4"
    return None


def refusal_reason(address: IPAddress) -> str | None:
    """What kind of non-public address `address` is, or None for a public one."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            inner, form = embedded
            reason = refusal_reason(inner)
            return f"{form} form of {reason}" if reason else None
        blocked = _BLOCKED_IPV6
    else:
        blocked = _BLOCKED_IPV4
    for network, label in blocked:
        if address in network:
            return label
    if not address.is_global:
        return "not globally routable"
    return None


class RefusedReceiverAddress(PermanentJobError):
    """The receiver's address is on a network webhooks may not reach; sending again
    cannot change that, so the reply fails for good and its callback says why."""


def _refusal_text(subject: str, reason: str) -> str:
    # Names the host and address only: a URL's path or query may hold a secret.
    return (
        f"{subject} is not a public address ({reason}); webhook receivers on private"
        f" networks need {ALLOW_SETTING}=true"
    )


def _parse(address: str) -> IPAddress:
    # getaddrinfo writes a link-local IPv6 address with its zone ("fe80::1%eth0").
    return ipaddress.ip_address(address)


def literal_refusal(url: str) -> str | None:
    """Why `url` names a refused address without any DNS lookup (an IP literal in
    any form the resolver accepts, e.g. 127.1 or 2130706433, or a localhost name),
    or None. Host names are only checked when sending, on what they resolve to."""
    try:
        host = httpx.URL(url).host.rstrip(".")
    except httpx.InvalidURL:
        return None
    if host == "localhost" or host.endswith(".localhost"):
        # RFC 6761: localhost names are loopback, whatever a resolver says.
        return _refusal_text(host, "loopback")
    return _address_refusal(host)


def _address_refusal(host: str) -> str | None:
    """Why `host`, when it is an IP address in any form the resolver accepts, is
    refused; None for a public address or a name (judged on what it resolves to)."""
    try:
        # AI_NUMERICHOST: parse the host as an address exactly as sending would,
        # without asking DNS.
        infos = socket.getaddrinfo(host, None, flags=socket.AI_NUMERICHOST)
    except (socket.gaierror, UnicodeError, ValueError):
        return None  # a name, not an address
    for info in infos:
        address = str(info[4][0])
        reason = refusal_reason(_parse(address))
        if reason is not None:
            return _refusal_text(address, reason)
    return None


async def system_resolver(host: str, port: int) -> Sequence[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


def _refused(refusal: str) -> RefusedReceiverAddress:
    return RefusedReceiverAddress("refused to connect: " + refusal)


class GuardedResolver(AbstractResolver):
    """aiohttp's resolver for receivers: it resolves the host, checks every address,
    and gives aiohttp only checked ones to connect to (aiohttp never looks the name
    up again). `connect_to` maps a checked address and port to where the connection
    really goes: the same, except in tests."""

    def __init__(self, resolver: Resolver, connect_to: ConnectTo | None = None) -> None:
        self._resolver = resolver
        self._connect_to = connect_to

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        # aiohttp turns an OSError into a connection error (retryable: usually a DNS
        # outage); anything else, such as the refusal, reaches the caller as it is.
        try:
            async with asyncio.timeout(RESOLVE_SECONDS):
                addresses = await self._resolver(host, port)
        except TimeoutError as exc:
            raise OSError(f"resolving {host} timed out") from exc
        except OSError as exc:
            raise OSError(f"could not resolve {host}: {exc}") from exc
        if not addresses:
            raise OSError(f"{host} resolves to no address")
        addresses = list(dict.fromkeys(addresses))  # in the resolver's order, once each
        # Every address is checked before any is tried: a name with one private
        # address is refused as a whole, whichever address would have answered.
        for address in addresses:
            reason = refusal_reason(_parse(address))
            if reason is not None:
                raise _refused(_refusal_text(f"{host} resolves to {address}, which", reason))
        return [self._result(host, address, port) for address in addresses]

    def _result(self, host: str, address: str, port: int) -> ResolveResult:
        if self._connect_to is not None:
            address, port = self._connect_to(address, port)
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        # "hostname" stays the URL's host: TLS names and verifies it (SNI).
        return ResolveResult(
            hostname=host,
            host=address,
            port=port,
            family=family,
            proto=0,
            flags=socket.AI_NUMERICHOST,
        )

    async def close(self) -> None:
        pass


class GuardedTransport(AiohttpTransport):
    """httpx-aiohttp's transport over a connector that connects only to checked
    addresses. aiohttp connects to an IP literal without asking the resolver, so a
    literal host is checked here."""

    def __init__(self, resolver: Resolver, connect_to: ConnectTo | None = None) -> None:
        guarded = GuardedResolver(resolver, connect_to)

        def session() -> aiohttp.ClientSession:
            # Made in the running loop, at the first request. No DNS cache: each new
            # connection resolves (and checks) again. trust_env stays off: a proxy
            # from the environment would connect on our behalf, unchecked.
            connector = aiohttp.TCPConnector(
                resolver=guarded,
                use_dns_cache=False,
                ssl=httpx.create_ssl_context(),
                limit=RECEIVER_LIMITS.max_connections or 0,
                keepalive_timeout=RECEIVER_LIMITS.keepalive_expiry,
            )
            return aiohttp.ClientSession(connector=connector)

        super().__init__(limits=RECEIVER_LIMITS, client=session)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        # A name is left to the resolver, which checks what it resolves to.
        refusal = _address_refusal(request.url.host)
        if refusal is not None:
            raise _refused(refusal)
        return await super().handle_async_request(request)


# httpx's defaults for a client's pool.
RECEIVER_LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20)


def guarded_receiver_client(
    resolver: Resolver = system_resolver, *, connect_to: ConnectTo | None = None
) -> httpx.AsyncClient:
    """The client webhook processors send with while private networks are off
    (`connect_to` redirects the checked connections; tests use it).

    An explicit transport also keeps httpx from using HTTP(S)_PROXY from the
    environment: a proxy would connect on our behalf, to an address nobody checked.
    Otherwise it is made as every outbound client is (agent.http.new_http_client):
    redirects are not followed, and URL credentials travel as the Authorization header.
    """
    return new_http_client(transport=GuardedTransport(resolver, connect_to))
