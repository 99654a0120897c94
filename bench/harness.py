"""What the benchmarks share: processes, ports, waiting, HTTP load, percentiles, results.

One way to do each thing:

- processes: `Service` (a child process logging to a file; `start`, `stop`, RSS, CPU);
  `start_relay` and `start_worker` run the real `agent-relay serve` and `worker`,
  `start_bare_app` the bare Starlette app, `start_fake_peers` the fake agent-server
  and Slack Web API (bench/fake_peers.py); `running` stops them however a run ends;
- ports: `free_port`, and `closed_port` for peers that must refuse connections;
- waiting: `wait_for(predicate, within=...)` polls a condition until a deadline;
- load: `HttpConnection` (keep-alive HTTP/1.1 over pre-built request bytes),
  `closed_loop` (N connections, each sending its next request when the last one is
  answered) and `open_loop` (requests due at fixed times, latency counted from the
  due time, so a slow server cannot slow the generator down and hide its queueing);
- latency figures: `percentile` (nearest rank) and `Latency`;
- the fakes' side of HTTP: `serve_http` (a small keep-alive server) and `Receiver`
  (where webhook callbacks deliver their replies);
- results: `machine_description`, `code_version`, `record` (appends to
  bench/RESULTS.md).

The request bytes of each route are in bench/payloads.py.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import hashlib
import hmac
import inspect
import itertools
import json
import math
import os
import platform
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, overload

import httpx

T = TypeVar("T")

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
RESULTS = BENCH / "RESULTS.md"
PYTHON = sys.executable
RELAY_BIN = str(Path(sys.executable).parent / "agent-relay")
CORPORA = ROOT / "tests" / "corpora"
HOST = "127.0.0.1"

# Secrets of the benchmark's own relay; nothing here is real.
AGENT_SESSION_KEY = "bench-session-api-key"
API_TOKEN = "bench-api-token"
SLACK_SIGNING_SECRET = "bench-slack-signing-secret"
SLACK_BOT_TOKEN = "xoxb-bench-0000-token"
SLACK_BOT_USER = "UBENCHBOT"
SLACK_TEAM = "TBENCH"
GITHUB_APP_ID = "424242"
GITHUB_WEBHOOK_SECRET = "bench-github-webhook-secret"
GITLAB_TOKEN = "glpat-bench-token-0000"
GITLAB_WEBHOOK_SECRET = "bench-gitlab-webhook-secret"
WEBHOOK_SECRET = "bench-receiver-secret"
FINAL_RESPONSE = "The bench agent's final answer."


# -- ports, waiting, percentiles ---------------------------------------------------------


def free_port() -> int:
    """A loopback port nobody listens on right now (the kernel picks it)."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def closed_port() -> int:
    """A port for peers that must refuse every connection (so their calls fail at once)."""
    return free_port()


@overload
async def wait_for(
    predicate: Callable[[], Awaitable[T]],
    *,
    within: float,
    what: str | Callable[[], str],
    interval: float = 0.02,
) -> T: ...


@overload
async def wait_for(
    predicate: Callable[[], T],
    *,
    within: float,
    what: str | Callable[[], str],
    interval: float = 0.02,
) -> T: ...


async def wait_for(
    predicate: Callable[[], Any],
    *,
    within: float,
    what: str | Callable[[], str],
    interval: float = 0.02,
) -> Any:
    """Poll `predicate` (sync or async) until it returns something truthy; return it.

    Raises TimeoutError naming `what` (a callable is evaluated then, to describe the
    current state) when `within` seconds pass first.
    """
    deadline = time.monotonic() + within
    while True:
        result = predicate()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result
        if time.monotonic() >= deadline:
            text = what() if callable(what) else what
            raise TimeoutError(f"{text} (waited {within:.0f} s)")
        await asyncio.sleep(interval)


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank percentile `q` (0 < q <= 100) of `values` (any order)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True)
class Latency:
    """p50 / p99 / max of latencies in seconds; a request that never got an answer
    counts as infinitely slow, so a percentile that falls on one shows as a timeout."""

    count: int
    p50: float
    p99: float
    max: float

    @classmethod
    def of(cls, seconds: Sequence[float]) -> Latency:
        return cls(
            len(seconds),
            percentile(seconds, 50),
            percentile(seconds, 99),
            max(seconds, default=math.nan),
        )

    def row(self) -> list[str]:
        return [ms(self.p50), ms(self.p99), ms(self.max)]


def ms(seconds: float) -> str:
    if math.isinf(seconds):
        return "timeout"
    if math.isnan(seconds):
        return "-"
    value = seconds * 1000
    return f"{value:.1f} ms" if value < 100 else f"{value:,.0f} ms"


def rate(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.1f}"


# -- processes ------------------------------------------------------------------------------


class Service:
    """A child process whose stdout and stderr go to `<log_dir>/<name>.log`."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        workdir: Path,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.env = dict(env)
        self.workdir = workdir
        self.log_path = workdir / f"{name}.log"
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> Service:
        log_fd = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            self.process = await asyncio.create_subprocess_exec(
                *self.argv,
                cwd=self.workdir,
                env=self.env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log_fd,
                stderr=asyncio.subprocess.STDOUT,
            )
        finally:
            os.close(log_fd)
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None, f"{self.name} is not started"
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.returncode is None

    async def stop(self, grace: float = 15.0) -> None:
        """SIGTERM, then SIGKILL after `grace` seconds."""
        if self.process is None or self.process.returncode is not None:
            return
        self.process.terminate()
        try:
            await asyncio.wait_for(self.process.wait(), grace)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except FileNotFoundError:
            return ""

    def rss_bytes(self) -> int:
        """Resident set size now (VmRSS)."""
        return _proc_status_kib(self.pid, "VmRSS") * 1024

    def peak_rss_bytes(self) -> int:
        """The highest resident set size so far (VmHWM)."""
        return _proc_status_kib(self.pid, "VmHWM") * 1024

    def cpu_seconds(self) -> float:
        """User + system CPU time of the process, all its threads included."""
        stat = Path(f"/proc/{self.pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2 :].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    async def wait_http(self, url: str, *, within: float = 60.0) -> None:
        """Wait until GET `url` answers 200 (and fail early if the process died)."""

        async def answers() -> bool:
            if not self.alive():
                raise RuntimeError(f"{self.name} exited:\n{self.log_tail()}")
            try:
                async with httpx.AsyncClient(timeout=2.0) as client:
                    return (await client.get(url)).status_code == 200
            except httpx.HTTPError:
                return False

        await wait_for(
            answers, within=within, what=lambda: f"{self.name} not ready:\n{self.log_tail()}"
        )

    async def wait_log(self, text: str, *, within: float = 60.0) -> None:
        def logged() -> bool:
            if not self.alive():
                raise RuntimeError(f"{self.name} exited:\n{self.log_tail()}")
            return text in self.log_tail(200_000)

        await wait_for(logged, within=within, what=lambda: f"{self.name} never logged {text!r}")


def _proc_status_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def _machine_busy_seconds() -> float:
    """CPU seconds spent by every process of the machine so far (all cores)."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU use over a window, in % of one core: of some services, of this process (the
    load generator) and of everything else on the machine ("others": other people's
    tests share these cores too, and make a run noisy)."""

    def __init__(self, services: Mapping[str, Service]) -> None:
        self.services = dict(services)
        self._start: dict[str, float] = {}
        self._wall = 0.0
        self.percent: dict[str, float] = {}

    def _sample(self) -> dict[str, float]:
        sample = {name: service.cpu_seconds() for name, service in self.services.items()}
        sample["generator"] = time.process_time()
        sample["machine"] = _machine_busy_seconds()
        return sample

    def start(self) -> None:
        self._start, self._wall = self._sample(), time.monotonic()

    def stop(self) -> dict[str, float]:
        end, wall = self._sample(), time.monotonic() - self._wall
        used = {name: 100 * (end[name] - self._start[name]) / wall for name in end}
        machine = used.pop("machine")
        used["others"] = max(0.0, machine - sum(used.values()))
        self.percent = used
        return used


@contextlib.asynccontextmanager
async def running(*services: Service) -> Any:
    """Stop the services (in reverse order) when the block ends, however it ends."""
    try:
        yield services
    finally:
        for service in reversed(services):
            await service.stop()


# -- the relay, the bare app and the fakes --------------------------------------------------


def _product_setting_names() -> set[str]:
    from relay.settings import Settings

    return {name.upper() for name in Settings.model_fields}


def has_setting(name: str) -> bool:
    """Whether this build of agent-relay reads the environment variable `name`."""
    return name.upper() in _product_setting_names()


def parse_setting(text: str) -> tuple[str, str]:
    """A `--setting NAME=VALUE` option of a benchmark script."""
    name, separator, value = text.partition("=")
    if not separator or not name:
        raise argparse.ArgumentTypeError("expected NAME=VALUE")
    return name.upper(), value


def relay_env(database_url: str, **settings: str) -> dict[str, str]:
    """The environment of a relay process: this one's, minus every agent-relay setting
    that might leak in, plus the database and `settings` (NAME=value).

    Webhook receivers are allowed on private networks: every benchmark's receiver
    listens on loopback."""
    product = _product_setting_names()
    inherited = {key: value for key, value in os.environ.items() if key.upper() not in product}
    loopback_receivers = (
        {"WEBHOOK_ALLOW_PRIVATE_NETWORKS": "true"}
        if "WEBHOOK_ALLOW_PRIVATE_NETWORKS" in product
        else {}
    )
    return {**inherited, **loopback_receivers, "DATABASE_URL": database_url, **settings}


def github_private_key() -> str:
    """A fresh RSA key in PEM, as a GitHub App's private key looks."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def all_platforms(*, agent_url: str, peers_url: str, refused_url: str | None) -> dict[str, str]:
    """Settings that turn on the agent webhooks, /api, Slack, GitHub and GitLab.

    Slack's Web API is the fake peers' (Bolt asks `auth.test` once before it lets an
    event through). GitHub's and GitLab's APIs are the fake peers' refusing ones, so
    the jobs their webhooks queue fail for good at once; or, with `refused_url`, a
    closed port, where they fail and are retried with backoff.
    """
    return {
        "AGENT_SERVER_URL": agent_url,
        "AGENT_SERVER_API_KEY": AGENT_SESSION_KEY,
        "API_TOKEN": API_TOKEN,
        "SLACK_SIGNING_SECRET": SLACK_SIGNING_SECRET,
        "SLACK_BOT_TOKEN": SLACK_BOT_TOKEN,
        "SLACK_API_URL": f"{peers_url}/slack/",
        "GITHUB_APP_ID": GITHUB_APP_ID,
        "GITHUB_PRIVATE_KEY": github_private_key(),
        "GITHUB_WEBHOOK_SECRET": GITHUB_WEBHOOK_SECRET,
        "GITHUB_API_URL": refused_url or f"{peers_url}/github-api",
        "GITHUB_URL": refused_url or f"{peers_url}/github-web",  # the setup page only
        "GITLAB_URL": refused_url or f"{peers_url}/gitlab",
        "GITLAB_TOKEN": GITLAB_TOKEN,
        "GITLAB_WEBHOOK_SECRET": GITLAB_WEBHOOK_SECRET,
    }


@dataclass
class Server:
    """A started HTTP service: its process and where it listens."""

    service: Service
    url: str
    port: int


async def start_relay(
    workdir: Path, env: Mapping[str, str], *, name: str = "relay", migrate: bool = False
) -> Server:
    """`agent-relay serve` on a free loopback port, ready (GET /readyz is 200).

    `migrate` runs `agent-relay migrate` first (serve migrates SQLite by itself)."""
    if migrate:
        await run_command([RELAY_BIN, "migrate"], env=env, workdir=workdir)
    port = free_port()
    service = Service(
        name, [RELAY_BIN, "serve", "--host", HOST, "--port", str(port)], env=env, workdir=workdir
    )
    await service.start()
    relay = Server(service, f"http://{HOST}:{port}", port)
    try:
        await service.wait_http(f"{relay.url}/readyz")
    except BaseException:
        await service.stop()
        raise
    return relay


async def start_worker(workdir: Path, env: Mapping[str, str], *, name: str) -> Service:
    """`agent-relay worker`, once it says that it has started."""
    service = Service(name, [RELAY_BIN, "worker"], env=env, workdir=workdir)
    await service.start()
    await service.wait_log("started with")
    return service


async def run_command(argv: Sequence[str], *, env: Mapping[str, str], workdir: Path) -> str:
    process = await asyncio.create_subprocess_exec(
        *argv,
        cwd=workdir,
        env=dict(env),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), 120)
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed:\n{output.decode(errors='replace')}")
    return output.decode(errors="replace")


async def _start_script(
    workdir: Path, name: str, script: str, ready_path: str, *options: str
) -> Server:
    """A bench/ script run as an HTTP server on a free port, once `ready_path` answers."""
    port = free_port()
    service = Service(
        name,
        [PYTHON, str(BENCH / script), "--port", str(port), *options],
        env=os.environ,
        workdir=workdir,
    )
    await service.start()
    server = Server(service, f"http://{HOST}:{port}", port)
    await service.wait_http(f"{server.url}{ready_path}")
    return server


async def start_bare_app(workdir: Path, *, database: Path | None = None) -> Server:
    """The bare Starlette app (bench/bare_app.py) under the same Python and uvicorn;
    with `database`, the floor: the same app writing a durable webhook's rows there."""
    if database is None:
        return await _start_script(workdir, "bare-app", "bare_app.py", "/ready")
    return await _start_script(
        workdir, "floor-app", "bare_app.py", "/ready", "--database", str(database)
    )


async def start_fake_peers(workdir: Path) -> Server:
    """bench/fake_peers.py: the agent-server's REST API and Slack's auth.test."""
    return await _start_script(workdir, "fake-peers", "fake_peers.py", "/_stats")


def _sqlite_busy_jobs(path: Path) -> int:
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        row = connection.execute(
            "SELECT COUNT(*) FROM jobs WHERE status = 'running'"
            " OR (status = 'queued' AND run_after <= ?)",
            (time.time(),),
        ).fetchone()
        return int(row[0])
    finally:
        connection.close()


async def wait_idle(database: Path, *, within: float) -> None:
    """Wait until the relay's SQLite database has no job running or due (jobs that
    wait for a later time, such as a periodic maintenance job, do not count)."""
    busy = -1

    async def idle() -> bool:
        nonlocal busy
        busy = await asyncio.to_thread(_sqlite_busy_jobs, database)
        return busy == 0

    await wait_for(idle, within=within, what=lambda: f"{busy} jobs still due or running")


# -- HTTP: a keep-alive client over pre-built bytes -----------------------------------------


@dataclass(frozen=True, slots=True)
class HttpResponse:
    status: int
    body: bytes

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


def build_request(
    method: str, path: str, body: bytes = b"", headers: Mapping[str, str] | None = None
) -> bytes:
    """The bytes of one HTTP/1.1 request, ready to be written to a connection."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {HOST}", f"Content-Length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def _dechunk(buffer: bytearray, start: int) -> tuple[bytes, int] | None:
    """A chunked body starting at `start`: (body, end offset), or None if incomplete."""
    body = bytearray()
    at = start
    while True:
        line_end = buffer.find(b"\r\n", at)
        if line_end < 0:
            return None
        size = int(bytes(buffer[at:line_end]).split(b";")[0], 16)
        if size == 0:
            trailer_end = buffer.find(b"\r\n\r\n", line_end)
            return None if trailer_end < 0 else (bytes(body), trailer_end + 4)
        chunk_start = line_end + 2
        if len(buffer) < chunk_start + size + 2:
            return None
        body += buffer[chunk_start : chunk_start + size]
        at = chunk_start + size + 2


class _ClientProtocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[HttpResponse] | None = None
        self.usable = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.waiter is not None:
            self._parse()

    def connection_lost(self, exc: Exception | None) -> None:
        self.usable = False
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError(f"connection lost: {exc}"))
        self.waiter = None

    def _parse(self) -> None:
        buffer = self.buffer
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(buffer[:end]).lower()
        start = end + 4
        length_at = head.find(b"\r\ncontent-length:")
        if length_at >= 0:
            line_end = head.find(b"\r\n", length_at + 2)
            length = int(head[length_at + 17 : line_end if line_end >= 0 else len(head)])
            if len(buffer) < start + length:
                return
            body, consumed = bytes(buffer[start : start + length]), start + length
        elif b"\r\ntransfer-encoding: chunked" in head:
            parsed = _dechunk(buffer, start)
            if parsed is None:
                return
            body, consumed = parsed
        else:
            body, consumed = b"", start
        del buffer[:consumed]
        if b"\r\nconnection: close" in head:
            self.usable = False
        waiter, self.waiter = self.waiter, None
        assert waiter is not None
        if not waiter.done():
            waiter.set_result(HttpResponse(int(head[9:12]), body))


class HttpConnection:
    """One keep-alive connection; `request` writes pre-built bytes and awaits the
    answer (HTTP/1.1, one request at a time). A closed connection is opened again."""

    def __init__(self, port: int, host: str = HOST) -> None:
        self.host, self.port = host, port
        self._protocol: _ClientProtocol | None = None

    async def open(self) -> HttpConnection:
        loop = asyncio.get_running_loop()
        _, protocol = await loop.create_connection(_ClientProtocol, self.host, self.port)
        self._protocol = protocol
        return self

    async def request(self, data: bytes) -> HttpResponse:
        if self._protocol is None or not self._protocol.usable:
            self.close()
            await self.open()
        protocol = self._protocol
        assert protocol is not None and protocol.transport is not None
        waiter = asyncio.get_running_loop().create_future()
        protocol.waiter = waiter
        protocol.transport.write(data)
        return await waiter

    def close(self) -> None:
        if self._protocol is not None and self._protocol.transport is not None:
            self._protocol.transport.close()
        self._protocol = None


async def open_connections(port: int, count: int) -> list[HttpConnection]:
    return list(await asyncio.gather(*(HttpConnection(port).open() for _ in range(count))))


# -- load: closed loop and open loop ---------------------------------------------------------

# Called for every answered request: (index, sent at, answered at, response); times are
# time.monotonic(), which is one clock for every process of the machine.
OnResponse = Callable[[int, float, float, HttpResponse], None]


@dataclass
class ClosedLoopResult:
    requests: int  # answered inside the measured window
    errors: int  # non-2xx answers and lost connections inside the window
    seconds: float
    latencies: list[float]
    first_error: str | None = None
    cpu: dict[str, float] = field(default_factory=dict)

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


async def closed_loop(
    port: int,
    make: Callable[[int], bytes],
    *,
    connections: int,
    duration: float | None = None,
    total: int | None = None,
    warmup: float = 0.0,
    meter: CpuMeter | None = None,
    on_response: OnResponse | None = None,
) -> ClosedLoopResult:
    """Each connection sends `make(i)` (i = 0, 1, ...) as soon as its last request is
    answered, for `warmup` + `duration` seconds or until `total` requests are sent.
    Only the window after the warm-up counts."""
    assert duration is not None or total is not None
    pool = await open_connections(port, connections)
    counter = itertools.count()
    window_start = time.monotonic() + warmup
    stop_at = window_start + duration if duration is not None else math.inf
    result = ClosedLoopResult(0, 0, 0.0, [])
    metered = False

    async def drive(connection: HttpConnection) -> None:
        nonlocal metered
        while True:
            now = time.monotonic()
            if now >= stop_at:
                return
            if not metered and now >= window_start:
                metered = True
                if meter is not None:
                    meter.start()
            index = next(counter)
            if total is not None and index >= total:
                return
            data = make(index)
            sent = time.monotonic()
            try:
                response = await connection.request(data)
            except ConnectionError as exc:
                response = HttpResponse(0, str(exc).encode())
            answered = time.monotonic()
            if on_response is not None:
                on_response(index, sent, answered, response)
            if window_start <= answered <= stop_at:
                result.requests += 1
                result.latencies.append(answered - sent)
                if not response.ok:
                    result.errors += 1
                    if result.first_error is None:
                        result.first_error = f"{response.status}: {response.body[:300]!r}"

    try:
        await asyncio.gather(*(drive(connection) for connection in pool))
    finally:
        for connection in pool:
            connection.close()
    result.seconds = min(time.monotonic(), stop_at) - window_start
    if meter is not None and metered:
        result.cpu = meter.stop()
    return result


@dataclass
class OpenLoopResult:
    scheduled: int
    latencies: list[float]  # one per scheduled request; inf when it got no answer in time
    errors: int  # answered, but not 2xx (or the connection was lost)
    timeouts: int  # no answer within the timeout of its due time
    first_error: str | None = None

    @property
    def latency(self) -> Latency:
        return Latency.of(self.latencies)


async def open_loop(
    port: int,
    schedule: Sequence[tuple[float, bytes]],
    *,
    connections: int,
    give_up_after: float,
    on_response: OnResponse | None = None,
) -> OpenLoopResult:
    """Send each request of `schedule` ((seconds after the start, bytes), in time order)
    when it is due, on the first free connection.

    Latency runs from the due time, not from the moment of sending: waiting for a free
    connection counts, as it would for clients that do not wait for the server.
    A request still waiting for a connection `give_up_after` seconds after its due time
    is not sent and counts as a timeout, as does one answered later than that.
    """
    timeout = give_up_after
    pool = await open_connections(port, connections)
    start = time.monotonic() + 0.05
    latencies = [math.inf] * len(schedule)
    backlog: asyncio.Queue[int | None] = asyncio.Queue()
    result = OpenLoopResult(len(schedule), latencies, 0, 0)

    async def drive(connection: HttpConnection) -> None:
        while (index := await backlog.get()) is not None:
            offset, data = schedule[index]
            due = start + offset
            if time.monotonic() - due > timeout:
                continue  # too late to be worth sending: a timeout
            try:
                response = await connection.request(data)
            except ConnectionError as exc:
                response = HttpResponse(0, str(exc).encode())
            answered = time.monotonic()
            if on_response is not None:
                on_response(index, due, answered, response)
            if answered - due <= timeout:
                latencies[index] = answered - due
            if not response.ok:
                result.errors += 1
                if result.first_error is None:
                    result.first_error = f"{response.status}: {response.body[:300]!r}"

    drivers = [asyncio.create_task(drive(connection)) for connection in pool]
    try:
        for index, (offset, _) in enumerate(schedule):
            delay = start + offset - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)  # pacing by the clock, as an open loop does
            backlog.put_nowait(index)
        for _ in drivers:
            backlog.put_nowait(None)
        last_due = start + (schedule[-1][0] if schedule else 0.0)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                asyncio.gather(*drivers), max(0.1, last_due + timeout - time.monotonic() + 0.05)
            )
    finally:
        for driver in drivers:
            driver.cancel()
        await asyncio.gather(*drivers, return_exceptions=True)
        for connection in pool:
            connection.close()
    result.timeouts = sum(1 for value in latencies if math.isinf(value))
    return result


def uniform_schedule(requests: Iterable[bytes], per_second: float) -> list[tuple[float, bytes]]:
    return [(index / per_second, data) for index, data in enumerate(requests)]


# -- HTTP: a small server for the fakes -----------------------------------------------------


@dataclass(frozen=True, slots=True)
class HttpRequest:
    method: str
    target: str  # path and query
    headers: dict[str, str]  # names lower-cased
    body: bytes

    @property
    def path(self) -> str:
        return self.target.partition("?")[0]


@dataclass(frozen=True, slots=True)
class HttpAnswer:
    status: int = 200
    body: bytes = b"{}"
    content_type: str = "application/json"

    @classmethod
    def json(cls, value: Any, status: int = 200) -> HttpAnswer:
        return cls(status, json.dumps(value).encode())


_REASONS = {
    200: "OK",
    201: "Created",
    401: "Unauthorized",
    404: "Not Found",
    411: "Length Required",
}


class _ServerProtocol(asyncio.Protocol):
    def __init__(self, handler: Callable[[HttpRequest], HttpAnswer]) -> None:
        self.handler = handler
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while self.transport is not None and not self.transport.is_closing():
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buffer[:end]).decode("latin-1").split("\r\n")
            headers = {}
            for line in head[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            if "chunked" in headers.get("transfer-encoding", ""):
                self._answer(HttpAnswer(411, b'{"error": "send a Content-Length"}'), close=True)
                return
            length = int(headers.get("content-length") or 0)
            if len(self.buffer) < end + 4 + length:
                return
            body = bytes(self.buffer[end + 4 : end + 4 + length])
            del self.buffer[: end + 4 + length]
            method, target, _ = head[0].split(" ", 2)
            answer = self.handler(HttpRequest(method, target, headers, body))
            self._answer(answer, close=headers.get("connection", "").lower() == "close")

    def _answer(self, answer: HttpAnswer, *, close: bool) -> None:
        assert self.transport is not None
        reason = _REASONS.get(answer.status, "Whatever")
        self.transport.write(
            f"HTTP/1.1 {answer.status} {reason}\r\nContent-Type: {answer.content_type}\r\n"
            f"Content-Length: {len(answer.body)}\r\n\r\n".encode()
            + answer.body
        )
        if close:
            self.transport.close()


async def serve_http(
    handler: Callable[[HttpRequest], HttpAnswer], port: int = 0
) -> tuple[asyncio.Server, int]:
    """An HTTP/1.1 keep-alive server on loopback; `handler` answers each request."""
    server = await asyncio.get_running_loop().create_server(
        lambda: _ServerProtocol(handler), HOST, port
    )
    return server, int(server.sockets[0].getsockname()[1])


def reply_signature_ok(body: bytes, signature: str) -> bool:
    expected = "sha256=" + hmac.new(WEBHOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, signature)


# -- results ----------------------------------------------------------------------------------


def machine_description() -> str:
    model = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{os.cpu_count()} cores ({model}), {memory_gib:.0f} GiB, Linux {platform.release()},"
        f" Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}"
    )


def code_version() -> str:
    """The agent-relay code measured: the commit, and the product files changed on top
    of it; or, for a copy of the code put first on PYTHONPATH, what its
    .bench-version file says."""
    import relay

    product = Path(relay.__file__).resolve().parents[1]
    if product != ROOT:
        marker = product / ".bench-version"
        described = marker.read_text().strip() if marker.exists() else "no .bench-version"
        return f"{product} ({described})"
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        changes = subprocess.run(
            ["git", "status", "--porcelain", "--", "relay", "agent", "bots", "processors", "db"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        ).stdout.split("\n")
    except OSError:
        return "unknown commit"
    changed = sorted({line[3:] for line in changes if line.strip()})
    return commit + (f" with local changes to {', '.join(changed)}" if changed else "")


def today() -> str:
    return datetime.date.today().isoformat()


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def record(title: str, body: str, *, label: str | None = None) -> None:
    """Append a dated section to bench/RESULTS.md (machine and code version included)."""
    heading = f"### {title} — {today()}" + (f" ({label})" if label else "")
    load = os.getloadavg()[0]
    section = (
        f"\n{heading}\n\nMachine: {machine_description()}; load average {load:.1f} when"
        f" recorded. Code: {code_version()}.\n\n{body.strip()}\n"
    )
    with RESULTS.open("a", encoding="utf-8") as results:
        results.write(section)
    print(f"recorded in {RESULTS.relative_to(ROOT)}")


# -- the webhook receiver ----------------------------------------------------------------------


@dataclass(frozen=True)
class ReceivedReply:
    conversation_id: str
    at: float  # time.monotonic() when it arrived
    status: str
    summary: str
    delivery_id: str
    signed: bool  # X-Relay-Signature-256 matches the callback's secret


class Receiver:
    """Where webhook callbacks deliver replies: records each one (answering 200) and
    resolves the future of a conversation whose reply somebody is waiting for."""

    def __init__(self) -> None:
        self.replies: list[ReceivedReply] = []
        self._waiters: dict[str, asyncio.Future[float]] = {}
        self.server: asyncio.Server | None = None
        self.url = ""

    async def start(self) -> Receiver:
        self.server, port = await serve_http(self.handle)
        self.url = f"http://{HOST}:{port}/replies"
        return self

    def close(self) -> None:
        if self.server is not None:
            self.server.close()

    def expect(self, conversation: str) -> asyncio.Future[float]:
        """A future that gets the arrival time of `conversation`'s next reply."""
        waiter: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self._waiters[conversation] = waiter
        return waiter

    def handle(self, request: HttpRequest) -> HttpAnswer:
        arrived = time.monotonic()
        body = json.loads(request.body)
        reply = ReceivedReply(
            conversation_id=str(body.get("conversation_id")),
            at=arrived,
            status=str(body.get("status")),
            summary=str(body.get("summary")),
            delivery_id=request.headers.get("x-relay-delivery", ""),
            signed=reply_signature_ok(
                request.body, request.headers.get("x-relay-signature-256", "")
            ),
        )
        self.replies.append(reply)
        waiter = self._waiters.pop(reply.conversation_id, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(arrived)
        return HttpAnswer.json({})

    def problems(self, expected: Iterable[str]) -> list[str]:
        """What is wrong with the replies received: one, completed, signed, the agent's
        final answer, for each expected conversation, and nothing else."""
        wanted = set(expected)
        seen: dict[str, int] = {}
        problems = []
        for reply in self.replies:
            seen[reply.conversation_id] = seen.get(reply.conversation_id, 0) + 1
            if reply.status != "completed" or reply.summary != FINAL_RESPONSE:
                problems.append(f"{reply.conversation_id}: {reply.status} {reply.summary!r}")
            if not reply.signed:
                problems.append(f"{reply.conversation_id}: bad signature")
        twice = sum(1 for count in seen.values() if count > 1)
        missing = len(wanted - seen.keys())
        unexpected = len(seen.keys() - wanted)
        if twice:
            problems.append(f"{twice} conversations answered more than once")
        if missing:
            problems.append(f"{missing} conversations not answered")
        if unexpected:
            problems.append(f"{unexpected} replies for conversations nobody asked about")
        return problems
