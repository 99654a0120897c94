"""Git's smart HTTP protocol for the fakes: `git clone/fetch/push` against loopback.

A fake's handler recognises a git request by its path (`split_git_path`), decides on
credentials itself (`basic_auth`; `challenge` answers 401 so git asks its credential
helper; `refuse` answers 403 where `wants_push` and the user may only read), and
then lets `serve_git` answer it. `serve_git` runs the real `git http-backend` as a CGI
program on one bare repository, so clones, partial clones, fetches and pushes are
git's own. Call these before reading the request body: they read it themselves.

The repositories come from `GitRepositories` (tests/support/git_repos.py, re-exported
here with `make_large_repository`, `git_env` and `GitClient`, the git CLI as a user).
"""

from __future__ import annotations

import binascii
import re
import subprocess
import threading
from base64 import b64decode
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from io import BufferedIOBase, BufferedReader
from pathlib import Path
from typing import IO, cast
from urllib.parse import parse_qs, urlsplit

from tests.support.git_repos import GitClient, GitRepositories, git_env, make_large_repository

__all__ = [
    "GitClient",
    "GitRepositories",
    "basic_auth",
    "challenge",
    "git_env",
    "is_git_path",
    "make_large_repository",
    "refuse",
    "serve_git",
    "split_git_path",
    "wants_push",
]

_GIT_PATH = re.compile(
    r"/?(?P<repo>.+?)\.git(?P<rest>/info/refs|/git-upload-pack|/git-receive-pack)"
)
_PIECE = 64 * 1024


def split_git_path(path: str) -> tuple[str, str] | None:
    """'/acme/api.git/info/refs' -> ('acme/api', '/info/refs'); None when ``path`` (a
    query string is ignored) is not a smart-HTTP path. Names of any depth work
    ('/group/sub/proj.git/...'); a name with an empty, '.' or '..' segment does not."""
    match = _GIT_PATH.fullmatch(urlsplit(path).path)
    if match is None:
        return None
    repo = match["repo"]
    if any(segment in ("", ".", "..") for segment in repo.split("/")):
        return None
    return repo, match["rest"]


def is_git_path(path: str) -> bool:
    """True for a smart-HTTP path: '<repo>.git/info/refs', '<repo>.git/git-upload-pack',
    '<repo>.git/git-receive-pack' (with or without a leading slash and a query)."""
    return split_git_path(path) is not None


def wants_push(path_info: str, query: str) -> bool:
    """True when the request belongs to a push: the receive-pack endpoint, or its
    advertisement (info/refs?service=git-receive-pack)."""
    if path_info.endswith("/git-receive-pack"):
        return True
    return "git-receive-pack" in parse_qs(query).get("service", [])


def basic_auth(header: str | None) -> tuple[str, str] | None:
    """(user, password) of an 'Authorization: Basic ...' header; None for any other."""
    scheme, _, encoded = (header or "").strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = b64decode(encoded.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, colon, password = decoded.partition(":")
    return (user, password) if colon else None


def challenge(handler: BaseHTTPRequestHandler, realm: str) -> None:
    """401 with WWW-Authenticate: Basic realm=..., so that git asks its credential helper
    (and, when the credentials it sent were refused, tells the helper to forget them)."""
    headers = {"WWW-Authenticate": f'Basic realm="{realm}"'}
    refuse(handler, 401, "Authentication required", headers=headers)


def refuse(
    handler: BaseHTTPRequestHandler,
    status: int,
    message: str,
    *,
    headers: dict[str, str] | None = None,
) -> None:
    """Answer ``status`` with a plain-text ``message`` (git prints it), after reading the
    request body so the connection stays usable for the next request."""
    for _ in _request_body(handler):
        pass
    payload = f"{message}\n".encode()
    handler.send_response(status)
    for name, value in (headers or {}).items():
        handler.send_header(name, value)
    handler.send_header("Content-Type", "text/plain; charset=utf-8")
    handler.send_header("Content-Length", str(len(payload)))
    handler.end_headers()
    handler.wfile.write(payload)


def serve_git(
    handler: BaseHTTPRequestHandler,
    repository_dir: Path,
    path_info: str,
    query: str,
    *,
    remote_user: str,
) -> int:
    """Answer the current request of ``handler`` by running `git http-backend` on the bare
    repository ``repository_dir``; returns the number of response body bytes sent.

    ``path_info`` is what follows '<repo>.git' ('/info/refs'). The request body is
    streamed to the backend whether sent with Content-Length or chunked (git chunks
    pushes larger than http.postBuffer); then the backend sees no CONTENT_LENGTH and
    reads to the end. Request headers reach it as HTTP_* (Content-Encoding: gzip, which
    it decodes; Git-Protocol, which selects protocol v2). Receive-pack is enabled
    (REMOTE_USER, and http.receivepack in the repositories GitRepositories makes): the
    caller refuses pushes it does not allow before calling this.
    """
    chunked = _is_chunked(handler)
    cgi = {
        "GATEWAY_INTERFACE": "CGI/1.1",
        "GIT_HTTP_EXPORT_ALL": "1",
        "GIT_PROJECT_ROOT": str(repository_dir),
        "PATH_INFO": path_info,
        "QUERY_STRING": query,
        "REQUEST_METHOD": handler.command,
        "REMOTE_USER": remote_user,
        "REMOTE_ADDR": str(handler.client_address[0]),
        "CONTENT_TYPE": handler.headers.get("Content-Type", ""),
        "SERVER_PROTOCOL": handler.request_version,
    }
    if not chunked and handler.headers.get("Content-Length"):
        cgi["CONTENT_LENGTH"] = handler.headers["Content-Length"]
    for name, value in handler.headers.items():
        if name.lower() not in ("authorization", "content-type", "content-length"):
            cgi["HTTP_" + name.upper().replace("-", "_")] = value
    backend = subprocess.Popen(
        ["git", "http-backend"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=git_env() | cgi
    )
    assert backend.stdin is not None and backend.stdout is not None
    feeder = threading.Thread(
        target=_feed, args=(handler, backend.stdin), name="git-http-body", daemon=True
    )
    feeder.start()
    try:
        sent = _relay_response(handler, cast(BufferedReader, backend.stdout))
    except BaseException:
        backend.kill()  # the client went away: nobody reads the rest
        raise
    finally:
        feeder.join(timeout=60)
        backend.stdout.close()
        backend.wait(timeout=60)
    return sent


def _is_chunked(handler: BaseHTTPRequestHandler) -> bool:
    return "chunked" in handler.headers.get("Transfer-Encoding", "").lower()


def _request_body(handler: BaseHTTPRequestHandler) -> Iterator[bytes]:
    """The request body in pieces, de-chunked; stops early if the client goes away."""
    rfile = handler.rfile
    if not _is_chunked(handler):
        yield from _pieces(rfile, int(handler.headers.get("Content-Length") or 0))
        return
    while size := int(rfile.readline().split(b";")[0].strip() or b"0", 16):
        yield from _pieces(rfile, size)
        rfile.readline()  # the CRLF after the chunk
    while rfile.readline() not in (b"\r\n", b"\n", b""):
        pass  # trailers, up to the blank line that ends the body


def _pieces(rfile: BufferedIOBase, length: int) -> Iterator[bytes]:
    while length > 0:
        piece = rfile.read(min(_PIECE, length))
        if not piece:
            return
        length -= len(piece)
        yield piece


def _feed(handler: BaseHTTPRequestHandler, sink: IO[bytes]) -> None:
    """Copy the request body to the backend; read all of it even when the backend has
    stopped listening, so that the answer and the connection stay in step."""
    listening = True
    try:
        for piece in _request_body(handler):
            if listening:
                try:
                    sink.write(piece)
                except (BrokenPipeError, ValueError):
                    listening = False
    except OSError:
        pass  # the client went away; the response side notices too
    finally:
        try:
            sink.close()
        except BrokenPipeError:
            pass


def _relay_response(handler: BaseHTTPRequestHandler, cgi: BufferedReader) -> int:
    """Send the backend's CGI answer (a Status header, headers, a blank line, the body)
    as an HTTP response: chunked on HTTP/1.1 keep-alive, else ended by closing."""
    status, headers = 200, []
    while (line := cgi.readline()) not in (b"\r\n", b"\n"):
        if not line:
            handler.send_error(502, "git http-backend gave no answer")
            return 0
        name, _, value = line.decode("latin-1").partition(":")
        if name.lower() == "status":
            status = int(value.split()[0])
        elif name.lower() not in ("content-length", "transfer-encoding", "connection"):
            headers.append((name.strip(), value.strip()))
    chunked = handler.protocol_version == "HTTP/1.1" and handler.request_version == "HTTP/1.1"
    handler.send_response(status)
    for name, value in headers:
        handler.send_header(name, value)
    handler.send_header(*(("Transfer-Encoding", "chunked") if chunked else ("Connection", "close")))
    handler.end_headers()
    sent = 0
    while piece := cgi.read1(_PIECE):
        handler.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
        sent += len(piece)
    if chunked:
        handler.wfile.write(b"0\r\n\r\n")
    handler.wfile.flush()
    return sent
