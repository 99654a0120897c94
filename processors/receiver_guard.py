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
use. httpcore's public network-backend seam keeps the guard this module's size.

WEBHOOK_ALLOW_PRIVATE_NETWORKS=true turns the guard off (a receiver on the same host
or network, as in tests and some deployments).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable, Sequence

import httpcore
import httpx

from agent.http import DEFAULT_TIMEOUT
from db.jobs import PermanentJobError

ALLOW_SETTING = "WEBHOOK_ALLOW_PRIVATE_NETWORKS"

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# (host, port) -> the addresses the host resolves to, as IP strings.
Resolver = Callable[[str, int], Awaitable[Sequence[str]]]


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


class GuardedNetworkBackend(httpcore.AsyncNetworkBackend):
    """Opens TCP connections only to checked addresses (asyncio only)."""

    def __init__(
        self,
        resolver: Resolver = system_resolver,
        inner: httpcore.AsyncNetworkBackend | None = None,
    ) -> None:
        self._resolver = resolver
        self._inner = inner or httpcore.AnyIOBackend()

    async def _resolve(self, host: str, port: int, seconds: float | None) -> list[str]:
        try:
            async with asyncio.timeout(seconds):
                addresses = await self._resolver(host, port)
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout(f"resolving {host} timed out") from exc
        except OSError as exc:
            # Usually temporary (a DNS outage), so retryable like a refused connection.
            raise httpcore.ConnectError(f"could not resolve {host}: {exc}") from exc
        if not addresses:
            raise httpcore.ConnectError(f"{host} resolves to no address")
        return list(dict.fromkeys(addresses))  # in the resolver's order, once each

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        addresses = await self._resolve(host, port, timeout)
        # Every address is checked before any is tried: a name with one private
        # address is refused as a whole, whichever address would have answered.
        for address in addresses:
            reason = refusal_reason(_parse(address))
            if reason is not None:
                subject = address if host == address else f"{host} resolves to {address}, which"
                raise RefusedReceiverAddress(
                    "refused to connect: " + _refusal_text(subject, reason)
                )
        error: Exception | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(
                    address,
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc
        assert error is not None
        raise error

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise RefusedReceiverAddress("refused to connect: a Unix socket is no webhook receiver")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


# httpx's defaults for a client's pool.
RECEIVER_LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20)


class GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx's own transport, whose connections are opened by `network_backend`."""

    def __init__(self, network_backend: httpcore.AsyncNetworkBackend) -> None:
        super().__init__(limits=RECEIVER_LIMITS)
        # httpx 0.28 takes no network backend (encode/httpx PR 3749 proposes one), so
        # the pool it built is replaced by the same pool over the guarded backend.
        # tests/processors/test_receiver_guard.py fails if httpx stops using `_pool`.
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(),
            max_connections=RECEIVER_LIMITS.max_connections,
            max_keepalive_connections=RECEIVER_LIMITS.max_keepalive_connections,
            keepalive_expiry=RECEIVER_LIMITS.keepalive_expiry,
            network_backend=network_backend,
        )


def guarded_receiver_client(
    resolver: Resolver = system_resolver, *, inner: httpcore.AsyncNetworkBackend | None = None
) -> httpx.AsyncClient:
    """The client webhook processors send with while private networks are off
    (`inner` opens the checked connections; tests replace it).

    An explicit transport also keeps httpx from using HTTP(S)_PROXY from the
    environment: a proxy would connect on our behalf, to an address nobody checked.
    Redirects are not followed (agent.http.send refuses them), as on the shared client.
    """
    transport = GuardedTransport(GuardedNetworkBackend(resolver, inner))
    return httpx.AsyncClient(transport=transport, timeout=DEFAULT_TIMEOUT, follow_redirects=False)
