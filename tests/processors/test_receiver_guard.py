"""The outbound guard of webhook receivers: which addresses are refused, and that the
guarded client resolves once, checks every address and connects only to a checked one.

No internet here: a "public" host is a name that an injected resolver answers with a
public address, and the client's `connect_to` records that address and connects to
a loopback receiver in its place. Loopback itself is reached through the system
resolver.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
import ssl
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from agent.http import failure_name
from processors.receiver_guard import (
    ALLOW_SETTING,
    RefusedReceiverAddress,
    Resolver,
    guarded_receiver_client,
    literal_refusal,
    refusal_reason,
)
from tests.support.deployment import closed_port_url
from tests.support.receiver import RecordingReceiver

PUBLIC_HOST = "receiver.example.test"
PUBLIC_ADDRESS = "93.184.216.34"


@pytest.fixture
def receiver() -> Iterator[RecordingReceiver]:
    with RecordingReceiver() as recording:
        yield recording


class Resolutions:
    """A resolver answering each lookup with the next of `answers` (the last one
    again once they run out), recording the hosts it was asked for."""

    def __init__(self, *answers: Sequence[str]) -> None:
        self._answers = list(answers)
        self.asked: list[str] = []

    async def __call__(self, host: str, port: int) -> Sequence[str]:
        self.asked.append(host)
        return self._answers.pop(0) if len(self._answers) > 1 else self._answers[0]


class Forwarding:
    """The client's `connect_to`: records each checked address handed to the
    connection, and sends it to a loopback port instead (the stand-in for that
    public address); `ports` gives a port per address, in order, when set."""

    def __init__(self, port: int, *, ports: Sequence[int] = ()) -> None:
        self.port = port
        self.ports = list(ports)
        self.connected: list[tuple[str, int]] = []

    def __call__(self, address: str, port: int) -> tuple[str, int]:
        self.connected.append((address, port))
        return "127.0.0.1", self.ports.pop(0) if self.ports else self.port


def closed_port() -> int:
    return int(closed_port_url().rsplit(":", 1)[1])


def guarded_to(
    receiver: RecordingReceiver, resolver: Resolver
) -> tuple[httpx.AsyncClient, Forwarding]:
    forwarding = Forwarding(receiver.port)
    return guarded_receiver_client(resolver, connect_to=forwarding), forwarding


# -- which addresses --------------------------------------------------------------------

REFUSED = {
    "127.0.0.1": "loopback",
    "127.255.0.9": "loopback",
    "::1": "loopback",
    "10.1.2.3": "private",
    "172.16.0.1": "private",
    "192.168.1.1": "private",
    "fd12:3456::1": "unique local",
    "169.254.169.254": "link-local",  # AWS, GCP, Azure, OpenStack metadata
    "fd00:ec2::254": "unique local",  # AWS metadata over IPv6
    "100.100.100.200": "shared",  # Alibaba metadata
    "100.64.0.1": "shared",
    "fe80::1": "link-local",
    "fe80::1%1": "link-local",
    "0.0.0.0": "unspecified",
    "::": "unspecified",
    "224.0.0.251": "multicast",
    "ff02::1": "multicast",
    "255.255.255.255": "broadcast",
    "240.0.0.1": "reserved",
    "192.0.2.10": "documentation",
    "2001:db8::1": "documentation",
    "::ffff:127.0.0.1": "IPv4-mapped form of loopback",
    "::ffff:169.254.169.254": "IPv4-mapped form of link-local",
    "::ffff:10.0.0.1": "IPv4-mapped form of private",
    "64:ff9b::7f00:1": "NAT64 form of loopback",
    "64:ff9b::a9fe:a9fe": "NAT64 form of link-local",
    "2002:a00:1::1": "6to4 form of private",
    "2001:0:4136:e378::1": "Teredo",
    "fec0::1": "site-local",
}
ALLOWED = ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808"]


@pytest.mark.parametrize(("address", "kind"), REFUSED.items())
def test_non_public_addresses_are_refused_and_named(address: str, kind: str) -> None:
    reason = refusal_reason(ipaddress.ip_address(address))
    assert reason is not None
    assert kind in reason


@pytest.mark.parametrize("address", ALLOWED)
def test_public_addresses_are_allowed(address: str) -> None:
    assert refusal_reason(ipaddress.ip_address(address)) is None


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/hook",
        "http://127.1/hook",  # the resolver's short form
        "http://2130706433/hook",  # and its decimal form
        "http://0x7f.0.0.1/hook",
        "http://localhost/hook",
        "http://LOCALHOST./hook",
        "http://hooks.localhost/hook",
        "http://[::1]:9000/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://169.254.169.254/latest/meta-data/",
        "https://10.0.0.5/hook",
        "http://[fd00:ec2::254]/",
        "http://0.0.0.0:8000/",
    ],
)
def test_literal_non_public_urls_are_refused_naming_the_setting(url: str) -> None:
    refusal = literal_refusal(url)
    assert refusal is not None
    assert f"{ALLOW_SETTING}=true" in refusal


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.example.com/x",
        "http://internal-name/x",
        "https://8.8.8.8/x",
        "http://[2606:4700::1]/",
    ],
)
def test_names_and_public_literals_pass_the_creation_check(url: str) -> None:
    # A name is judged when sending, on the addresses it resolves to then.
    assert literal_refusal(url) is None


def test_a_refusal_never_repeats_the_urls_path_or_query() -> None:
    refusal = literal_refusal("http://127.0.0.1/hook?token=s3cret-token")
    assert refusal is not None
    assert "s3cret-token" not in refusal and "/hook" not in refusal


# -- the guarded client ---------------------------------------------------------------


async def test_loopback_literal_is_refused_before_any_connection(
    receiver: RecordingReceiver,
) -> None:
    async with guarded_receiver_client() as client:
        with pytest.raises(RefusedReceiverAddress) as refused:
            await client.post(f"{receiver.url}/hook", content=b"{}")
    assert "127.0.0.1 is not a public address (loopback)" in str(refused.value)
    assert f"{ALLOW_SETTING}=true" in str(refused.value)
    assert receiver.requests == []


async def test_ipv4_mapped_loopback_literal_is_refused(receiver: RecordingReceiver) -> None:
    async with guarded_receiver_client() as client:
        with pytest.raises(RefusedReceiverAddress, match="IPv4-mapped form of loopback"):
            await client.post(f"http://[::ffff:127.0.0.1]:{receiver.port}/hook", content=b"{}")
    assert receiver.requests == []


async def test_a_name_resolving_to_loopback_is_refused(receiver: RecordingReceiver) -> None:
    # "localhost" goes through the system resolver, like any host name.
    async with guarded_receiver_client() as client:
        with pytest.raises(RefusedReceiverAddress) as refused:
            await client.post(f"http://localhost:{receiver.port}/hook", content=b"{}")
    assert str(refused.value).startswith("refused to connect: localhost resolves to ")
    assert "(loopback)" in str(refused.value)
    assert receiver.requests == []


@pytest.mark.parametrize(
    "answer",
    [["10.0.0.7"], ["169.254.169.254"], ["::ffff:127.0.0.1"], [PUBLIC_ADDRESS, "127.0.0.1"]],
)
async def test_a_name_with_any_non_public_address_is_refused_whole(
    receiver: RecordingReceiver, answer: list[str]
) -> None:
    client, forwarding = guarded_to(receiver, Resolutions(answer))
    async with client:
        with pytest.raises(RefusedReceiverAddress, match=f"{PUBLIC_HOST} resolves to"):
            await client.post(f"http://{PUBLIC_HOST}/hook", content=b"{}")
    assert forwarding.connected == []
    assert receiver.requests == []


async def test_a_public_address_is_connected_to_with_the_names_host_header(
    receiver: RecordingReceiver,
) -> None:
    resolver = Resolutions([PUBLIC_ADDRESS])
    client, forwarding = guarded_to(receiver, resolver)
    async with client:
        response = await client.post(f"http://{PUBLIC_HOST}:8080/hook", content=b'{"a": 1}')
    assert response.status_code == 200
    assert resolver.asked == [PUBLIC_HOST]
    assert forwarding.connected == [(PUBLIC_ADDRESS, 8080)]
    [request] = receiver.requests
    assert request.headers["host"] == f"{PUBLIC_HOST}:8080"
    assert request.body == b'{"a": 1}'


async def test_credentials_in_a_receivers_url_travel_as_basic_auth(
    receiver: RecordingReceiver,
) -> None:
    client, forwarding = guarded_to(receiver, Resolutions([PUBLIC_ADDRESS]))
    async with client:
        response = await client.post(f"http://hook:s3cret@{PUBLIC_HOST}/hook", content=b"{}")
    assert response.status_code == 200
    assert forwarding.connected == [(PUBLIC_ADDRESS, 80)]
    [request] = receiver.requests
    assert request.headers["authorization"] == "Basic aG9vazpzM2NyZXQ="  # hook:s3cret
    assert request.headers["host"] == PUBLIC_HOST


async def test_rebinding_cannot_move_a_connection_to_an_unchecked_address(
    receiver: RecordingReceiver,
) -> None:
    """The name answers public, then private: each connection resolves once and goes
    to the address it checked, so the private answer is refused, never connected to."""
    resolver = Resolutions([PUBLIC_ADDRESS], ["127.0.0.1"])
    client, forwarding = guarded_to(receiver, resolver)
    async with client:
        # "Connection: close": the next request needs a new connection, so a new lookup.
        first = await client.post(
            f"http://{PUBLIC_HOST}/hook", content=b"{}", headers={"Connection": "close"}
        )
        with pytest.raises(RefusedReceiverAddress, match=re.escape("resolves to 127.0.0.1")):
            await client.post(f"http://{PUBLIC_HOST}/hook", content=b"{}")
    assert first.status_code == 200
    assert resolver.asked == [PUBLIC_HOST, PUBLIC_HOST]  # once per connection
    assert forwarding.connected == [(PUBLIC_ADDRESS, 80)]
    assert len(receiver.requests) == 1


async def test_the_next_address_is_tried_when_one_does_not_answer(
    receiver: RecordingReceiver,
) -> None:
    forwarding = Forwarding(receiver.port, ports=[closed_port(), receiver.port])
    async with guarded_receiver_client(
        Resolutions(["2606:4700:4700::1111", PUBLIC_ADDRESS]), connect_to=forwarding
    ) as client:
        response = await client.post(f"http://{PUBLIC_HOST}/hook", content=b"{}")
    assert response.status_code == 200
    assert forwarding.connected == [("2606:4700:4700::1111", 80), (PUBLIC_ADDRESS, 80)]
    assert len(receiver.requests) == 1


async def test_a_failed_lookup_is_a_connect_error(receiver: RecordingReceiver) -> None:
    async def no_such_name(host: str, port: int) -> Sequence[str]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    client, forwarding = guarded_to(receiver, no_such_name)
    async with client:
        with pytest.raises(httpx.TransportError) as failed:
            await client.post(f"http://{PUBLIC_HOST}/hook", content=b"{}")
    assert isinstance(failed.value.__cause__, aiohttp.ClientConnectorDNSError)
    assert f"could not resolve {PUBLIC_HOST}" in str(failed.value.__cause__.os_error)
    assert failure_name(failed.value) == "ConnectError"  # retryable, like a refused connection
    assert forwarding.connected == []


def self_signed_certificate(host: str, directory: Path) -> tuple[Path, Path]:
    """A certificate for `host` that no client trusts, and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    certificate_file, key_file = directory / "receiver.crt", directory / "receiver.key"
    certificate_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return certificate_file, key_file


async def test_tls_names_and_verifies_the_host_while_connecting_to_the_checked_address(
    tmp_path: Path,
) -> None:
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(*self_signed_certificate(PUBLIC_HOST, tmp_path))
    server_names: list[str | None] = []
    server_context.sni_callback = lambda _socket, name, _context: server_names.append(name)

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0, ssl=server_context)
    forwarding = Forwarding(server.sockets[0].getsockname()[1])
    async with (
        server,
        guarded_receiver_client(Resolutions([PUBLIC_ADDRESS]), connect_to=forwarding) as client,
    ):
        with pytest.raises(httpx.TransportError) as failed:
            await client.post(f"https://{PUBLIC_HOST}/hook", content=b"{}")
    assert forwarding.connected == [(PUBLIC_ADDRESS, 443)]
    assert server_names == [PUBLIC_HOST]  # SNI names the URL's host, not the address
    # The certificate, though issued to that name, is trusted by nobody: it is checked.
    assert isinstance(failed.value.__cause__, aiohttp.ClientConnectorCertificateError)


async def test_redirects_are_not_followed_and_proxies_from_the_environment_are_not_used(
    receiver: RecordingReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    with RecordingReceiver() as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        monkeypatch.setenv("ALL_PROXY", proxy.url)
        receiver.fail_next(302)
        client, forwarding = guarded_to(receiver, Resolutions([PUBLIC_ADDRESS]))
        async with client:
            assert client.follow_redirects is False
            response = await client.post(f"http://{PUBLIC_HOST}/hook", content=b"{}")
        assert response.status_code == 302
        assert proxy.requests == []
    assert forwarding.connected == [(PUBLIC_ADDRESS, 80)]
