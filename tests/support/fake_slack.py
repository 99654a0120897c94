"""A fake Slack Web API for end-to-end tests, plus helpers that drive POST /slack/events.

`FakeSlack` answers ``GET|POST /api/<method>`` the way slack.com does: HTTP 200 with
``{"ok": true, ...}`` or ``{"ok": false, "error": "..."}``. Point the app's
SLACK_API_URL (or an ``AsyncWebClient(base_url=...)``) at ``fake.api_url``.

Requests are accepted in every form slack_sdk's AsyncWebClient sends them:

- the token as ``Authorization: Bearer <token>`` (or a ``token`` parameter);
- arguments in the query string (``params=``: GET methods such as
  conversations.replies and users.info, but also POST methods such as auth.test and
  reactions.add, whose body is then empty; booleans arrive as "1"/"0"), in an
  ``application/x-www-form-urlencoded`` body (``data=``), or in a JSON body
  (``json=``: chat.postMessage, chat.update);
- the OAuth client as HTTP Basic auth (oauth.v2.access), or as client_id /
  client_secret parameters.

Implemented methods: auth.test, oauth.v2.access, chat.postMessage, chat.update,
chat.postEphemeral, views.open, reactions.add, reactions.remove,
conversations.replies, users.info; any other method answers ``unknown_method``.
Ephemeral messages are kept apart (`ephemerals`): they are never in a thread.
Every call is recorded as a `SlackCall`; `fail_next` and `error_next` inject
failures.
"""

from __future__ import annotations

import base64
import binascii
import copy
import hashlib
import hmac
import itertools
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from tests.support.loopback import LoopbackServer

DEFAULT_APP_ID = "A0RELAY"
DEFAULT_BOT_SCOPE = (
    "app_mentions:read,channels:history,chat:write,groups:history,im:history,"
    "mpim:history,reactions:write,users:read"
)
# Slack's documented default (and maximum) page size of conversations.replies.
REPLIES_DEFAULT_LIMIT = 1000
# The first ts handed out: 1700000000.000100, then +100 microseconds per message.
_FIRST_TS_MICROS = 1_700_000_000_000_100
_TS_STEP_MICROS = 100
_CURSOR_PREFIX = "next_ts:"


@dataclass(frozen=True)
class SlackCall:
    """One request the fake received (including failed and injected-failure ones)."""

    method: str  # e.g. "chat.postMessage"
    token: str | None  # the bearer (or ``token`` parameter) token, None when absent
    # Query, form and JSON arguments merged (JSON values keep their types); for
    # Basic auth, client_id and client_secret are added here.
    params: dict[str, Any]
    http_status: int
    ok: bool
    error: str | None = None  # the "error" of an ok=false answer
    # When it was answered (time.monotonic()), to tell how far apart calls came.
    at: float = field(default_factory=time.monotonic)


@dataclass
class _Team:
    team_id: str
    bot_token: str
    bot_user_id: str
    bot_id: str
    app_id: str
    team_name: str
    enterprise_id: str | None
    scope: str


@dataclass
class _OAuthCode:
    team_id: str
    client_id: str
    client_secret: str
    authed_user_id: str
    redirect_uri: str | None


@dataclass
class _Fault:
    status: int  # HTTP status to answer
    error: str  # the "error" of the body
    retry_after: int | None
    remaining: int


@dataclass
class _Answer:
    body: dict[str, Any]
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)


def _ok(**fields: Any) -> _Answer:
    return _Answer({"ok": True, **fields})


def _error(error: str, **fields: Any) -> _Answer:
    return _Answer({"ok": False, "error": error, **fields})


def _ts_to_micros(ts: str) -> int:
    seconds, _, fraction = ts.partition(".")
    return int(seconds) * 1_000_000 + int((fraction + "000000")[:6])


def _micros_to_ts(micros: int) -> str:
    return f"{micros // 1_000_000}.{micros % 1_000_000:06d}"


def _ts_key(message: dict[str, Any]) -> int:
    return _ts_to_micros(str(message["ts"]))


def _truthy(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in {"1", "true", "yes"}


def _as_dict(value: Any) -> dict[str, Any] | None:
    """A JSON-object argument: a dict (JSON body) or its JSON text (form / query)."""
    if value is None or value == "":
        return None
    if isinstance(value, dict):
        return value
    try:
        decoded = json.loads(str(value))
    except ValueError:
        return None
    return decoded if isinstance(decoded, dict) else None


def _as_list(value: Any) -> list[Any] | None:
    if value is None or value == "":
        return None
    if isinstance(value, list):
        return value
    try:
        decoded = json.loads(str(value))
    except ValueError:
        return None
    return decoded if isinstance(decoded, list) else None


class FakeSlack(LoopbackServer):
    """Threaded fake of slack.com/api on 127.0.0.1, free port; use as a context manager."""

    thread_name = "fake-slack"

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._teams: dict[str, _Team] = {}
        self._tokens: dict[str, str] = {}  # live bot token -> team_id
        self._revoked: set[str] = set()
        self._users: dict[str, dict[str, Any]] = {}
        self._oauth_codes: dict[str, _OAuthCode] = {}
        # (team_id, channel) -> messages in arrival order (sorted by ts when read)
        self._messages: dict[tuple[str, str], list[dict[str, Any]]] = {}
        # (team_id, channel, ts) -> reaction name -> users who added it
        self._reactions: dict[tuple[str, str, str], dict[str, list[str]]] = {}
        self._faults: dict[str, list[_Fault]] = {}
        self._calls: list[SlackCall] = []
        self._ephemerals: list[dict[str, Any]] = []
        self._views: list[dict[str, Any]] = []
        self._last_ts_micros = _FIRST_TS_MICROS - _TS_STEP_MICROS

    # -- HTTP -----------------------------------------------------------------
    @property
    def api_url(self) -> str:
        """What tests set as SLACK_API_URL (slack_sdk's base_url)."""
        return f"{self.url}/api/"

    def handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self) -> None:
                body = self._read_body()
                answer = fake._dispatch(self.command, self.path, dict(self.headers), body)
                payload = json.dumps(answer.body).encode()
                self.send_response(answer.status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(payload)))
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)

            def _read_body(self) -> bytes:
                if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
                    chunks: list[bytes] = []
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                        if size == 0:
                            self.rfile.readline()  # the CRLF after the last chunk
                            return b"".join(chunks)
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else b""

            do_GET = do_POST = _handle

            def log_message(self, *args: Any) -> None:
                pass

        return Handler

    # -- setup ----------------------------------------------------------------
    def add_team(
        self,
        team_id: str,
        *,
        bot_token: str,
        bot_user_id: str,
        bot_id: str,
        app_id: str = DEFAULT_APP_ID,
        team_name: str | None = None,
        enterprise_id: str | None = None,
        scope: str = DEFAULT_BOT_SCOPE,
    ) -> None:
        """A workspace with the app installed; ``bot_token`` authenticates as its bot."""
        with self._lock:
            previous = self._teams.get(team_id)
            if previous is not None:
                self._tokens.pop(previous.bot_token, None)
            self._teams[team_id] = _Team(
                team_id=team_id,
                bot_token=bot_token,
                bot_user_id=bot_user_id,
                bot_id=bot_id,
                app_id=app_id,
                team_name=team_name if team_name is not None else f"Workspace {team_id}",
                enterprise_id=enterprise_id,
                scope=scope,
            )
            self._tokens[bot_token] = team_id
            self._revoked.discard(bot_token)

    def revoke_token(self, token: str) -> None:
        """Calls with ``token`` answer invalid_auth from now on."""
        with self._lock:
            self._revoked.add(token)

    def add_user(
        self,
        user_id: str,
        *,
        name: str,
        display_name: str = "",
        real_name: str = "",
        is_bot: bool = False,
        email: str = "",
    ) -> None:
        """A user; `email` shows in users.info's profile (as with users:read.email)."""
        with self._lock:
            self._users[user_id] = {
                "name": name,
                "display_name": display_name,
                "real_name": real_name,
                "is_bot": is_bot,
                "email": email,
            }

    def register_oauth_code(
        self,
        code: str,
        *,
        team_id: str,
        client_id: str,
        client_secret: str,
        authed_user_id: str = "U0INSTALLER",
        redirect_uri: str | None = None,
    ) -> None:
        """A single-use code that oauth.v2.access exchanges for ``team_id``'s bot token
        (the team must have been added with `add_team`). With ``redirect_uri``, a call
        sending another redirect_uri answers bad_redirect_uri."""
        with self._lock:
            self._oauth_codes[code] = _OAuthCode(
                team_id=team_id,
                client_id=client_id,
                client_secret=client_secret,
                authed_user_id=authed_user_id,
                redirect_uri=redirect_uri,
            )

    def add_message(
        self,
        team_id: str,
        channel: str,
        *,
        user: str,
        text: str,
        ts: str | None = None,
        thread_ts: str | None = None,
    ) -> str:
        """A message from a person (e.g. the thread an event refers to); returns its ts."""
        with self._lock:
            message: dict[str, Any] = {
                "type": "message",
                "user": user,
                "text": text,
                "ts": self._next_ts(ts),
                "team": team_id,
            }
            if thread_ts is not None:
                message["thread_ts"] = thread_ts
            self._store(team_id, channel, message)
            return str(message["ts"])

    # -- fault injection ------------------------------------------------------
    def fail_next(
        self,
        method: str,
        *,
        status: int = 500,
        retry_after: int | None = None,
        count: int = 1,
    ) -> None:
        """Answer the next ``count`` calls of ``method`` with HTTP ``status`` (a 429
        carries ``Retry-After: retry_after``, default 1, and error "ratelimited")."""
        if status == 429 and retry_after is None:
            retry_after = 1
        error = "ratelimited" if status == 429 else "internal_error"
        with self._lock:
            self._faults.setdefault(method, []).append(
                _Fault(status=status, error=error, retry_after=retry_after, remaining=count)
            )

    def error_next(self, method: str, error: str, *, count: int = 1) -> None:
        """Answer the next ``count`` calls of ``method`` 200 ``{"ok": false, "error"}``."""
        with self._lock:
            self._faults.setdefault(method, []).append(
                _Fault(status=200, error=error, retry_after=None, remaining=count)
            )

    # -- inspection -----------------------------------------------------------
    def calls(self, method: str | None = None) -> list[SlackCall]:
        """Every call so far (or those of one method), in arrival order."""
        with self._lock:
            return [c for c in self._calls if method is None or c.method == method]

    def clear_calls(self) -> None:
        with self._lock:
            self._calls.clear()

    def ephemerals(self, user: str | None = None) -> list[dict[str, Any]]:
        """The ephemeral messages posted so far (to ``user`` only, when given)."""
        with self._lock:
            return [dict(e) for e in self._ephemerals if user is None or e["user"] == user]

    def views(self) -> list[dict[str, Any]]:
        """The modals opened so far, each with the id views.open gave it."""
        with self._lock:
            return [copy.deepcopy(view) for view in self._views]

    def messages(self, channel: str, *, team_id: str | None = None) -> list[dict[str, Any]]:
        """Every message of ``channel`` (top-level and replies), oldest first, with
        metadata; ``team_id`` narrows to one workspace (default: all of them)."""
        with self._lock:
            return [copy.deepcopy(m) for m in self._channel(channel, team_id)]

    def thread(
        self, channel: str, thread_ts: str, *, team_id: str | None = None
    ) -> list[dict[str, Any]]:
        """The parent (if stored) and the replies of a thread, oldest first."""
        with self._lock:
            return [
                copy.deepcopy(m)
                for m in self._channel(channel, team_id)
                if m["ts"] == thread_ts or m.get("thread_ts") == thread_ts
            ]

    def reactions(self, channel: str, ts: str, *, team_id: str | None = None) -> set[str]:
        """Names of the reactions on one message."""
        with self._lock:
            return {
                name
                for (team, chan, message_ts), names in self._reactions.items()
                if chan == channel and message_ts == ts and team_id in (None, team)
                for name in names
            }

    # -- internals: state -----------------------------------------------------
    def _next_ts(self, ts: str | None = None) -> str:
        if ts is not None:
            self._last_ts_micros = max(self._last_ts_micros, _ts_to_micros(ts))
            return ts
        self._last_ts_micros += _TS_STEP_MICROS
        return _micros_to_ts(self._last_ts_micros)

    def _store(self, team_id: str, channel: str, message: dict[str, Any]) -> None:
        self._messages.setdefault((team_id, channel), []).append(message)

    def _channel(self, channel: str, team_id: str | None) -> list[dict[str, Any]]:
        found = [
            message
            for (team, chan), messages in self._messages.items()
            if chan == channel and team_id in (None, team)
            for message in messages
        ]
        return sorted(found, key=_ts_key)

    def _find(self, team_id: str, channel: str, ts: str) -> dict[str, Any] | None:
        for message in self._messages.get((team_id, channel), []):
            if message["ts"] == ts:
                return message
        return None

    def _public(
        self, team_id: str, channel: str, message: dict[str, Any], *, with_metadata: bool
    ) -> dict[str, Any]:
        """A stored message as the API shows it (thread summary, reactions)."""
        shown = copy.deepcopy(message)
        if not with_metadata:
            shown.pop("metadata", None)
        replies = [
            m
            for m in self._messages.get((team_id, channel), [])
            if m.get("thread_ts") == message["ts"] and m["ts"] != message["ts"]
        ]
        if replies and "thread_ts" not in message:
            replies.sort(key=_ts_key)
            users = list(dict.fromkeys(str(m.get("user")) for m in replies))
            shown.update(
                thread_ts=message["ts"],
                reply_count=len(replies),
                reply_users=users,
                reply_users_count=len(users),
                latest_reply=replies[-1]["ts"],
            )
        elif "thread_ts" in message and message["thread_ts"] != message["ts"]:
            parent = self._find(team_id, channel, str(message["thread_ts"]))
            if parent is not None and "user" in parent:
                shown["parent_user_id"] = parent["user"]
        reactions = self._reactions.get((team_id, channel, str(message["ts"])))
        if reactions:
            shown["reactions"] = [
                {"name": name, "users": list(users), "count": len(users)}
                for name, users in reactions.items()
            ]
        return shown

    # -- internals: requests --------------------------------------------------
    def _dispatch(self, verb: str, raw_path: str, headers: dict[str, str], body: bytes) -> _Answer:
        parts = urlsplit(raw_path)
        if not parts.path.startswith("/api/"):
            return _Answer({"ok": False, "error": "not_found"}, status=404)
        method = parts.path[len("/api/") :].strip("/")
        header = {k.lower(): v for k, v in headers.items()}
        params: dict[str, Any] = dict(parse_qsl(parts.query, keep_blank_values=True))
        content_type = header.get("content-type", "").split(";")[0].strip().lower()
        if body and content_type == "application/json":
            try:
                decoded = json.loads(body)
            except ValueError:
                decoded = None
            if not isinstance(decoded, dict):
                answer = _error("invalid_json")
                with self._lock:
                    self._record(method, None, params, answer)
                return answer
            params.update(decoded)
        elif body and content_type in ("application/x-www-form-urlencoded", ""):
            params.update(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))

        token: str | None = None
        authorization = header.get("authorization", "")
        scheme, _, credentials = authorization.partition(" ")
        if scheme.lower() == "bearer" and credentials.strip():
            token = credentials.strip()
        elif scheme.lower() == "basic":
            try:
                client_id, _, client_secret = (
                    base64.b64decode(credentials.strip()).decode("utf-8").partition(":")
                )
            except (binascii.Error, UnicodeDecodeError):
                client_id = client_secret = ""
            params.setdefault("client_id", client_id)
            params.setdefault("client_secret", client_secret)
        if "token" in params:
            param_token = params.pop("token")
            token = token or (str(param_token) if param_token else None)

        with self._lock:
            answer = self._answer(method, token, params)
            self._record(method, token, params, answer)
            return answer

    def _record(
        self, method: str, token: str | None, params: dict[str, Any], answer: _Answer
    ) -> None:
        """Append a SlackCall; the caller holds the lock."""
        ok = answer.status == 200 and bool(answer.body.get("ok"))
        call = SlackCall(
            method=method,
            token=token,
            params=copy.deepcopy(params),
            http_status=answer.status,
            ok=ok,
            error=None if ok else str(answer.body.get("error")),
        )
        self._calls.append(call)

    def _answer(self, method: str, token: str | None, params: dict[str, Any]) -> _Answer:
        faults = self._faults.get(method)
        if faults:
            fault = faults[0]
            fault.remaining -= 1
            if fault.remaining <= 0:
                faults.pop(0)
            answer = _error(fault.error)
            answer.status = fault.status
            if fault.retry_after is not None:
                answer.headers["Retry-After"] = str(fault.retry_after)
            return answer

        handler = _HANDLERS.get(method)
        if handler is None:
            return _error("unknown_method")
        if method == "oauth.v2.access":
            return handler(self, None, params)
        if not token:
            return _error("not_authed")
        team_id = self._tokens.get(token)
        if team_id is None or token in self._revoked:
            return _error("invalid_auth")
        return handler(self, self._teams[team_id], params)

    # -- internals: methods ---------------------------------------------------
    def _auth_test(self, team: _Team, params: dict[str, Any]) -> _Answer:
        return _ok(
            url=f"https://{team.team_id.lower()}.slack.com/",
            team=team.team_name,
            user=f"bot-{team.bot_user_id.lower()}",
            team_id=team.team_id,
            user_id=team.bot_user_id,
            bot_id=team.bot_id,
            app_id=team.app_id,
            enterprise_id=team.enterprise_id,
            is_enterprise_install=False,
        )

    def _oauth_v2_access(self, _: None, params: dict[str, Any]) -> _Answer:
        code = str(params.get("code") or "")
        registered = self._oauth_codes.get(code)
        if registered is None:
            return _error("invalid_code")
        if str(params.get("client_id") or "") != registered.client_id:
            return _error("invalid_client_id")
        if str(params.get("client_secret") or "") != registered.client_secret:
            return _error("bad_client_secret")
        if registered.redirect_uri is not None and params.get("redirect_uri") not in (
            None,
            registered.redirect_uri,
        ):
            return _error("bad_redirect_uri")
        team = self._teams.get(registered.team_id)
        if team is None:
            return _error("invalid_code")
        del self._oauth_codes[code]
        enterprise = (
            None
            if team.enterprise_id is None
            else {"id": team.enterprise_id, "name": f"Enterprise {team.enterprise_id}"}
        )
        return _ok(
            access_token=team.bot_token,
            token_type="bot",
            scope=team.scope,
            bot_user_id=team.bot_user_id,
            app_id=team.app_id,
            team={"id": team.team_id, "name": team.team_name},
            enterprise=enterprise,
            is_enterprise_install=False,
            authed_user={"id": registered.authed_user_id},
        )

    def _chat_post_message(self, team: _Team, params: dict[str, Any]) -> _Answer:
        channel = str(params.get("channel") or "")
        if not channel:
            return _error("channel_not_found")
        text = params.get("text")
        blocks = _as_list(params.get("blocks"))
        attachments = _as_list(params.get("attachments"))
        markdown_text = params.get("markdown_text")
        if not (text or blocks or attachments or markdown_text):
            return _error("no_text")
        message: dict[str, Any] = {
            "type": "message",
            "user": team.bot_user_id,
            "bot_id": team.bot_id,
            "app_id": team.app_id,
            "text": str(text or markdown_text or ""),
            "ts": self._next_ts(),
            "team": team.team_id,
        }
        if blocks is not None:
            message["blocks"] = blocks
        if attachments is not None:
            message["attachments"] = attachments
        thread_ts = params.get("thread_ts")
        if thread_ts:
            message["thread_ts"] = str(thread_ts)
        metadata = _as_dict(params.get("metadata"))
        if metadata is not None:
            message["metadata"] = metadata
        self._store(team.team_id, channel, message)
        return _ok(
            channel=channel,
            ts=message["ts"],
            message=self._public(team.team_id, channel, message, with_metadata=True),
        )

    def _chat_update(self, team: _Team, params: dict[str, Any]) -> _Answer:
        channel = str(params.get("channel") or "")
        ts = str(params.get("ts") or "")
        message = self._find(team.team_id, channel, ts)
        if message is None:
            return _error("message_not_found")
        if "text" in params:
            message["text"] = str(params["text"])
        blocks = _as_list(params.get("blocks"))
        if blocks is not None:
            message["blocks"] = blocks
        metadata = _as_dict(params.get("metadata"))
        if metadata is not None:
            message["metadata"] = metadata
        message["edited"] = {"user": team.bot_user_id, "ts": self._next_ts()}
        return _ok(
            channel=channel,
            ts=ts,
            text=message["text"],
            message=self._public(team.team_id, channel, message, with_metadata=True),
        )

    def _chat_post_ephemeral(self, team: _Team, params: dict[str, Any]) -> _Answer:
        channel, user = str(params.get("channel") or ""), str(params.get("user") or "")
        if not channel or not user:
            return _error("channel_not_found" if not channel else "user_not_in_channel")
        if not (params.get("text") or params.get("blocks")):
            return _error("no_text")
        self._ephemerals.append(
            {
                "team": team.team_id,
                "channel": channel,
                "user": user,
                "text": str(params.get("text") or ""),
                "thread_ts": params.get("thread_ts"),
            }
        )
        return _ok(message_ts=self._next_ts())

    def _views_open(self, team: _Team, params: dict[str, Any]) -> _Answer:
        view = _as_dict(params.get("view"))
        if not params.get("trigger_id"):
            return _error("invalid_trigger_id")
        if view is None:
            return _error("invalid_arguments")
        opened = {**view, "id": f"V{len(self._views) + 1:08d}", "team_id": team.team_id}
        self._views.append(opened)
        return _ok(view=opened)

    def _reactions_add(self, team: _Team, params: dict[str, Any]) -> _Answer:
        key, name = self._reaction_target(team, params)
        if not name:
            return _error("invalid_name")
        names = self._reactions.setdefault(key, {})
        if name in names:
            return _error("already_reacted")
        names[name] = [team.bot_user_id]
        return _ok()

    def _reactions_remove(self, team: _Team, params: dict[str, Any]) -> _Answer:
        key, name = self._reaction_target(team, params)
        if not name:
            return _error("invalid_name")
        names = self._reactions.get(key, {})
        if name not in names:
            return _error("no_reaction")
        del names[name]
        return _ok()

    @staticmethod
    def _reaction_target(team: _Team, params: dict[str, Any]) -> tuple[tuple[str, str, str], str]:
        key = (team.team_id, str(params.get("channel") or ""), str(params.get("timestamp") or ""))
        return key, str(params.get("name") or "").strip(":")

    def _conversations_replies(self, team: _Team, params: dict[str, Any]) -> _Answer:
        channel = str(params.get("channel") or "")
        ts = str(params.get("ts") or "")
        message = self._find(team.team_id, channel, ts)
        if message is None:
            return _error("thread_not_found")
        # ts may name a reply: the thread is then its parent's.
        parent_ts = str(message.get("thread_ts") or ts)
        parent = self._find(team.team_id, channel, parent_ts)
        if parent is None:
            return _error("thread_not_found")
        replies = sorted(
            (
                m
                for m in self._messages[(team.team_id, channel)]
                if m.get("thread_ts") == parent_ts and m["ts"] != parent_ts
            ),
            key=_ts_key,
        )
        thread = [parent, *replies]
        try:
            limit = int(params.get("limit") or REPLIES_DEFAULT_LIMIT)
        except (TypeError, ValueError):
            return _error("invalid_limit")
        if limit <= 0:
            limit = REPLIES_DEFAULT_LIMIT
        start = 0
        cursor = str(params.get("cursor") or "")
        if cursor:
            try:
                decoded = base64.b64decode(cursor, validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                return _error("invalid_cursor")
            if not decoded.startswith(_CURSOR_PREFIX):
                return _error("invalid_cursor")
            next_ts = decoded[len(_CURSOR_PREFIX) :]
            starts = [i for i, m in enumerate(thread) if m["ts"] == next_ts]
            if not starts:
                return _error("invalid_cursor")
            start = starts[0]
        page = thread[start : start + limit]
        has_more = start + limit < len(thread)
        with_metadata = _truthy(params.get("include_all_metadata", False))
        fields: dict[str, Any] = {
            "messages": [
                self._public(team.team_id, channel, m, with_metadata=with_metadata) for m in page
            ],
            "has_more": has_more,
        }
        if has_more:
            next_cursor = base64.b64encode(
                f"{_CURSOR_PREFIX}{thread[start + limit]['ts']}".encode()
            ).decode()
            fields["response_metadata"] = {"next_cursor": next_cursor}
        return _ok(**fields)

    def _users_info(self, team: _Team, params: dict[str, Any]) -> _Answer:
        user_id = str(params.get("user") or "")
        user = self._users.get(user_id)
        if user is None:
            return _error("user_not_found")
        return _ok(
            user={
                "id": user_id,
                "team_id": team.team_id,
                "name": user["name"],
                "deleted": False,
                "real_name": user["real_name"],
                "is_bot": user["is_bot"],
                "profile": {
                    "display_name": user["display_name"],
                    "display_name_normalized": user["display_name"],
                    "real_name": user["real_name"],
                    "real_name_normalized": user["real_name"],
                    "team": team.team_id,
                    **({"email": user["email"]} if user.get("email") else {}),
                },
            }
        )


_HANDLERS: dict[str, Any] = {
    "auth.test": FakeSlack._auth_test,
    "oauth.v2.access": FakeSlack._oauth_v2_access,
    "chat.postMessage": FakeSlack._chat_post_message,
    "chat.update": FakeSlack._chat_update,
    "chat.postEphemeral": FakeSlack._chat_post_ephemeral,
    "views.open": FakeSlack._views_open,
    "reactions.add": FakeSlack._reactions_add,
    "reactions.remove": FakeSlack._reactions_remove,
    "conversations.replies": FakeSlack._conversations_replies,
    "users.info": FakeSlack._users_info,
}


# -- driving POST /slack/events -------------------------------------------------
_event_ids = itertools.count(1)


def slack_signature_headers(
    signing_secret: str, body: bytes, *, timestamp: int | None = None
) -> dict[str, str]:
    """The headers Slack signs a request with: ``v0=`` + hex HMAC-SHA256, keyed by the
    signing secret, of ``v0:{timestamp}:{body}``."""
    when = int(time.time()) if timestamp is None else int(timestamp)
    basestring = b"v0:" + str(when).encode() + b":" + body
    digest = hmac.new(signing_secret.encode(), basestring, hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": str(when), "X-Slack-Signature": f"v0={digest}"}


def event_callback(
    team_id: str,
    event: dict[str, Any],
    *,
    event_id: str | None = None,
    api_app_id: str = DEFAULT_APP_ID,
    enterprise_id: str | None = None,
    bot_user_id: str | None = None,
) -> dict[str, Any]:
    """The Events API envelope around ``event``, as Slack POSTs it (type
    "event_callback"). ``bot_user_id`` fills authorizations[0].user_id."""
    authorization: dict[str, Any] = {
        "enterprise_id": enterprise_id,
        "team_id": team_id,
        "is_bot": True,
        "is_enterprise_install": False,
    }
    if bot_user_id is not None:
        authorization["user_id"] = bot_user_id
    number = next(_event_ids)
    envelope: dict[str, Any] = {
        "token": "fake-verification-token",
        "team_id": team_id,
        "context_team_id": team_id,
        "context_enterprise_id": enterprise_id,
        "api_app_id": api_app_id,
        "event": {"team": team_id, **event},
        "type": "event_callback",
        "event_id": event_id if event_id is not None else f"Ev{number:09d}",
        "event_time": int(time.time()),
        "authorizations": [authorization],
        "is_ext_shared_channel": False,
        "event_context": f"4-fake-event-context-{number}",
    }
    if enterprise_id is not None:
        envelope["enterprise_id"] = enterprise_id
    return envelope


def app_mention(
    *, user: str, text: str, channel: str, ts: str, thread_ts: str | None = None
) -> dict[str, Any]:
    """An ``app_mention`` event (text typically starts with ``<@BOT_USER_ID>``)."""
    event: dict[str, Any] = {
        "type": "app_mention",
        "user": user,
        "text": text,
        "ts": ts,
        "channel": channel,
        "event_ts": ts,
    }
    if thread_ts is not None:
        event["thread_ts"] = thread_ts
    return event


def im_message(
    *, user: str, text: str, channel: str, ts: str, thread_ts: str | None = None
) -> dict[str, Any]:
    """A ``message`` event in a direct message with the bot (channel_type "im")."""
    event = app_mention(user=user, text=text, channel=channel, ts=ts, thread_ts=thread_ts)
    return {**event, "type": "message", "channel_type": "im"}


_action_clock = itertools.count(1)


def block_actions(
    team_id: str,
    *,
    user: str,
    channel: str,
    message: dict[str, Any],
    action_id: str,
    value: str | None = None,
    selected: str | None = None,
    action_ts: str | None = None,
) -> dict[str, Any]:
    """The ``block_actions`` payload of a click on ``action_id`` in ``message`` (a
    message as `FakeSlack.thread` returns it); ``selected`` is a menu's chosen value."""
    action: dict[str, Any] = {
        "action_id": action_id,
        "block_id": "block",
        "action_ts": action_ts or f"{time.time():.6f}{next(_action_clock)}",
    }
    if selected is not None:
        action.update(type="static_select", selected_option={"value": selected})
    else:
        action.update(type="button", value=value if value is not None else "")
    container: dict[str, Any] = {
        "type": "message",
        "message_ts": message["ts"],
        "channel_id": channel,
        "is_ephemeral": False,
    }
    if message.get("thread_ts"):
        container["thread_ts"] = message["thread_ts"]
    return {
        "type": "block_actions",
        "team": {"id": team_id, "domain": team_id.lower()},
        "user": {"id": user, "team_id": team_id},
        "api_app_id": DEFAULT_APP_ID,
        "token": "fake-verification-token",
        "container": container,
        "trigger_id": f"trigger-{next(_action_clock)}",
        "channel": {"id": channel},
        "message": message,
        "actions": [action],
        "is_enterprise_install": False,
    }


def view_submission(
    team_id: str, *, user: str, view: dict[str, Any], reason: str | None
) -> dict[str, Any]:
    """The ``view_submission`` payload of a modal (as `FakeSlack.views` returns it)
    submitted with ``reason`` typed into its one text input."""
    values: dict[str, Any] = {}
    for block in view.get("blocks") or []:
        if block.get("type") == "input":
            element = block["element"]
            values[block["block_id"]] = {
                element["action_id"]: {"type": element["type"], "value": reason}
            }
    return {
        "type": "view_submission",
        "team": {"id": team_id, "domain": team_id.lower()},
        "user": {"id": user, "team_id": team_id},
        "api_app_id": DEFAULT_APP_ID,
        "token": "fake-verification-token",
        "trigger_id": f"trigger-{next(_action_clock)}",
        "view": {**view, "state": {"values": values}, "hash": "fake-hash"},
        "is_enterprise_install": False,
    }


def signed_interaction(
    signing_secret: str, payload: dict[str, Any]
) -> tuple[bytes, dict[str, str]]:
    """The body and headers Slack POSTs an interaction with: a form with one field,
    ``payload``, holding the JSON, signed like an event."""
    body = urlencode({"payload": json.dumps(payload)}).encode()
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        **slack_signature_headers(signing_secret, body),
    }
    return body, headers
