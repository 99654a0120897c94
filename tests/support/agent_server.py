"""Run the real openhands-agent-server (1.58.2) for end-to-end tests.

``AgentServerProcess`` runs ``<venv>/bin/python -m openhands.agent_server --host
127.0.0.1 --port N`` (what the ``agent-server`` console script calls) with its own
HOME, cwd, conversations and workspace directories, configured through ``OH_*``
variables (names checked against config.py / env_parser.py: ``Config`` fields,
prefix ``OH_``, list items ``_0``, nested fields ``_FIELD``, dicts as JSON).
``GET /health`` answers ``{"status": "ok"}`` after about 6-7 s (``/ready`` exists too).

Facts verified against 1.58.2 with the fake LLM of ``fake_llm.py``
(tests/e2e/test_agent_server_harness.py checks most of them):

- ``POST /api/conversations`` -> 201 with ConversationInfo; ``execution_status`` is
  still ``idle`` in that answer, the run starts right after. ``tags`` come back.
- ``conversation_id`` in the start body IS used: the answer's ``id`` is the chosen
  UUID (in dashed form; a 32-hex id is accepted too, and ``GET
  /api/conversations/{32-hex}`` also finds the conversation).
- Starting again with an existing ``conversation_id`` -> 200 (not 201) with the
  existing ConversationInfo (current status, original tags); the new
  ``initial_message`` is ignored (no new user message, no LLM call) and the new
  tags are not applied. Nothing is posted to ``{base}/conversations`` for it.
- ``POST /api/conversations/{id}/events`` ``{"role": "user", "content": [...],
  "run": true}`` -> 200 ``{"success": true}``.
- Webhooks: batches of at most 5 events (``event_buffer_size``) are POSTed to
  ``{base}/events/{uuid.hex}``, the first about 1 s after the first queued event
  (``OH_WEBHOOKS_0_FLUSH_DELAY=1``); ConversationInfo goes to ``{base}/conversations``
  at once when a conversation starts (``execution_status: idle``) and on
  pause/update/delete (source), not when a run finishes. Every webhook POST
  carries ``X-Session-API-Key: <session key>`` plus ``OH_WEBHOOKS_0_HEADERS``.
  A failed POST is retried ``num_retries`` times (default 3) ``retry_delay`` s apart
  (default 5; we set 1), then the batch is re-queued and sent again later.
- A ``finish`` reply: ... ActionEvent(FinishAction), ObservationEvent,
  execution_status ``finished``. A ``say`` reply: MessageEvent(source agent), then
  ``finished``. A ``fail(400)`` reply: execution_status ``error``, then a
  ConversationErrorEvent ``{"code": "LLMBadRequestError", "detail":
  "litellm.BadRequestError: OpenAIException - scripted failure", "classification":
  {"kind": "config", "retryable": false, "user_action": "settings", ...}}``;
  ``fail(500)`` gives code ``LLMServiceUnavailableError``, classification ``transient``,
  retryable true. With ``num_retries: 0`` there is exactly one LLM call.
- ``GET /api/conversations/{id}/events/search?sort_order=TIMESTAMP_DESC`` ->
  ``{"items": [...newest first], "next_page_id": null}``; ``kind=``, ``source=``,
  ``limit=`` (<= 100) filter. Items are dumped with ``exclude_none`` (null fields are
  MISSING, unlike the webhook bodies which carry them as null). An agent
  MessageEvent: ``{"id", "timestamp", "source": "agent", "parent_id", "llm_message":
  {"role": "assistant", "content": [{"cache_prompt": false, "type": "text", "text":
  ...}], "thinking_blocks": []}, "llm_response_id", "activated_skills": [],
  "extended_content": [], "kind": "MessageEvent"}``. An ActionEvent with FinishAction:
  ``{"id", "timestamp", "source": "agent", "parent_id", "thought": [],
  "thinking_blocks": [], "action": {"message": ..., "kind": "FinishAction"},
  "tool_name": "finish", "tool_call_id", "tool_call": {"id", "name": "finish",
  "arguments": "{\"message\": ...}", "origin": "completion"}, "llm_response_id",
  "security_risk": "UNKNOWN", "summary": "finish: {...}", "kind": "ActionEvent"}``.
- ``GET /api/conversations/{id}/agent_final_response`` -> ``{"response": text}``: the
  last FinishAction message or agent MessageEvent text; ``""`` when there is none
  (e.g. after an error).
- ``POST /api/conversations/{id}/ask_agent {"question": q}`` -> 200 ``{"response":
  text}`` when the LLM answers with text (the fake LLM sees a last user message
  ``<QUESTION>...## Question\n{q}...</QUESTION>`` and the agent's tools); no event is
  recorded. If the LLM answers with a tool call instead (e.g. the default
  ``finish`` reply), it is a 500 ``{"detail": "Internal Server Error", "exception":
  "Failed to generate summary", ...}`` - and after an unhandled 500 the server
  drops that keep-alive connection a moment later, so a pooled client's next
  request on it can fail with a connection reset.
- The agent offers the tools terminal, file_editor, task_tracker, finish, think,
  switch_llm; ``security_risk`` in tool arguments is optional (UNKNOWN when absent).
  The auto-title call (first user message) is a separate tool-less chat request.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import httpx

AGENT_SERVER_REQUIREMENT = "openhands-agent-server==1.58.2"
DEFAULT_VENV = Path("~/.cache/agent-relay/agent-server-venv")
FAKE_MODEL = "openai/fake-model"
_SERVER_MODULE = Path("lib/python3.12/site-packages/openhands/agent_server/__main__.py")


# -- the venv ---------------------------------------------------------------


def agent_server_venv_path() -> Path:
    """$AGENT_SERVER_VENV, default ~/.cache/agent-relay/agent-server-venv."""
    return Path(os.environ.get("AGENT_SERVER_VENV") or DEFAULT_VENV).expanduser().absolute()


def _venv_is_complete(venv: Path) -> bool:
    return (venv / "bin" / "python").exists() and (venv / _SERVER_MODULE).is_file()


def find_python312() -> str:
    """The Python 3.12 interpreter: ``$(pyenv root)/versions/3.12.*/bin/python3.12``
    (the pyenv shim refuses to run when the global version is 3.11), else
    ``python3.12`` on PATH."""
    roots: list[str] = []
    if os.environ.get("PYENV_ROOT"):
        roots.append(os.environ["PYENV_ROOT"])
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(
            ["pyenv", "root"], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        if out:
            roots.append(out)
    roots.append(str(Path("~/.pyenv").expanduser()))

    def patch_level(path: str) -> int:
        match = re.search(r"/versions/3\.12\.(\d+)/", path)
        return int(match.group(1)) if match else -1

    for root in roots:
        found = sorted(glob.glob(f"{root}/versions/3.12.*/bin/python3.12"), key=patch_level)
        if found:
            return found[-1]
    on_path = shutil.which("python3.12")
    if on_path:
        return on_path
    raise RuntimeError(
        "Python 3.12 not found (looked in $(pyenv root)/versions/3.12.*/bin and PATH); "
        "openhands-agent-server needs Python >= 3.12"
    )


def ensure_agent_server_venv(venv: Path | None = None) -> Path:
    """Return the agent-server venv, creating it first if it is missing.

    The venv is built in a temporary sibling directory and renamed into place only
    when pip succeeded, so a half-finished install is never taken for a good one.
    An fcntl lock next to it keeps two processes from installing at once.
    """
    venv = (venv or agent_server_venv_path()).expanduser().absolute()
    if _venv_is_complete(venv):
        return venv
    venv.parent.mkdir(parents=True, exist_ok=True)
    lock_path = venv.parent / f".{venv.name}.lock"
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if _venv_is_complete(venv):  # another process finished meanwhile
                return venv
            # Leftovers of a crashed install; we hold the lock, so none is live.
            for stale in venv.parent.glob(f".{venv.name}.tmp-*"):
                shutil.rmtree(stale, ignore_errors=True)
            if venv.exists():  # a directory without the server is not a venv we made
                shutil.rmtree(venv)
            tmp = Path(tempfile.mkdtemp(prefix=f".{venv.name}.tmp-", dir=venv.parent))
            tmp.chmod(0o755)  # mkdtemp makes it 0700
            try:
                _build_venv(tmp, venv)
                tmp.rename(venv)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            return venv
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _build_venv(tmp: Path, final: Path) -> None:
    python = find_python312()
    log = tmp.parent / f"{final.name}.install.log"
    with open(log, "w") as out:
        for cmd in (
            [python, "-m", "venv", str(tmp)],
            [str(tmp / "bin" / "python"), "-m", "pip", "install", AGENT_SERVER_REQUIREMENT],
        ):
            out.write(f"$ {' '.join(cmd)}\n")
            out.flush()
            result = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, check=False)
            if result.returncode != 0:
                raise RuntimeError(
                    f"installing the agent-server failed: {' '.join(cmd)} exited "
                    f"{result.returncode}\n{_tail(log)}"
                )
    if not (tmp / _SERVER_MODULE).is_file():
        raise RuntimeError(f"pip succeeded but {_SERVER_MODULE} is missing\n{_tail(log)}")
    # Scripts in bin/ carry the absolute venv path (shebangs, activate): point
    # them at the final location before the rename.
    old, new = str(tmp), str(final)
    for script in (tmp / "bin").iterdir():
        if script.is_symlink() or not script.is_file():
            continue
        try:
            text = script.read_text()
        except (UnicodeDecodeError, OSError):
            continue
        if old in text:
            script.write_text(text.replace(old, new))


# -- the process ------------------------------------------------------------


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (bind port 0, read it, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _tail(path: Path, lines: int = 60) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])


def agent_settings(llm_base_url: str, model: str = FAKE_MODEL) -> dict[str, Any]:
    """The ``agent_settings`` of POST /api/conversations for the fake LLM."""
    return {
        "agent_kind": "openhands",
        "llm": {
            "model": model,
            "api_key": "fake",
            "base_url": llm_base_url,
            "num_retries": 0,
            "api_mode": "chat",
        },
    }


def start_conversation_body(
    llm_base_url: str,
    working_dir: str | Path,
    text: str,
    *,
    conversation_id: str | None = None,
    tags: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """A complete POST /api/conversations body with an initial user message."""
    body: dict[str, Any] = {
        "agent_settings": agent_settings(llm_base_url),
        "workspace": {"working_dir": str(working_dir)},
        "initial_message": {"role": "user", "content": [{"type": "text", "text": text}]},
        "tags": dict(tags or {}),
    }
    if conversation_id is not None:
        body["conversation_id"] = conversation_id
    return body


class AgentServerStartError(RuntimeError):
    pass


class AgentServerProcess:
    """The real agent-server on a free 127.0.0.1 port, as a context manager.

    Everything it writes (HOME, conversations, workspace, bash events, log) lives
    under ``base_dir``.
    """

    def __init__(
        self,
        base_dir: Path,
        *,
        webhook_base_url: str | None = None,
        webhook_headers: Mapping[str, str] | None = None,
        api_key: str | None = None,
        flush_delay: float = 1.0,
        webhook_retries: int = 3,
        webhook_retry_delay: int = 1,
        extra_env: Mapping[str, str] | None = None,
        startup_timeout: float = 60.0,
        venv: Path | None = None,
    ) -> None:
        self.base_dir = Path(base_dir).absolute()
        self.webhook_base_url = webhook_base_url
        self.webhook_headers = dict(webhook_headers or {})
        self.api_key = api_key or f"test-session-{secrets.token_hex(8)}"
        self.flush_delay = flush_delay
        self.webhook_retries = webhook_retries
        self.webhook_retry_delay = webhook_retry_delay
        self.extra_env = dict(extra_env or {})
        self.startup_timeout = startup_timeout
        self.venv = venv
        self.home = self.base_dir / "home"
        self.conversations_path = self.base_dir / "conversations"
        self.workspace_path = self.base_dir / "workspace"
        self.log_path = self.base_dir / "agent-server.log"
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        assert self.port, "agent-server not started"
        return f"http://127.0.0.1:{self.port}"

    @property
    def headers(self) -> dict[str, str]:
        """Headers for calls to its API."""
        return {"X-Session-API-Key": self.api_key}

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def environment(self) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("OH_", "OPENHANDS_", "LLM_", "LITELLM_"))
            and k not in ("SESSION_API_KEY", "VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "DEBUG")
        }
        env.update(
            {
                "HOME": str(self.home),
                "OH_SESSION_API_KEYS_0": self.api_key,
                "OH_CONVERSATIONS_PATH": str(self.conversations_path),
                "OH_WORKSPACE_PATH": str(self.workspace_path),
                "OH_BASH_EVENTS_DIR": str(self.base_dir / "bash_events"),
                "OH_CONVERSATION_WORKTREE_ROOT": str(self.base_dir / "worktrees"),
                "OH_ENABLE_VSCODE": "false",
                "OH_PRELOAD_TOOLS": "false",
                "OH_ENABLE_BROWSER": "false",
                "OPENHANDS_AGENT_SERVER_CONFIG_PATH": str(self.base_dir / "no-config.json"),
                "LITELLM_LOCAL_MODEL_COST_MAP": "True",
                "NO_PROXY": "127.0.0.1,localhost",
                "no_proxy": "127.0.0.1,localhost",
            }
        )
        if self.webhook_base_url:
            env.update(
                {
                    "OH_WEBHOOKS_0_BASE_URL": self.webhook_base_url,
                    "OH_WEBHOOKS_0_FLUSH_DELAY": str(self.flush_delay),
                    # As README.md tells operators: batches within agent-relay's limit.
                    "OH_WEBHOOKS_0_MAX_BATCH_BYTES": "1048576",
                    "OH_WEBHOOKS_0_NUM_RETRIES": str(self.webhook_retries),
                    "OH_WEBHOOKS_0_RETRY_DELAY": str(self.webhook_retry_delay),
                }
            )
            if self.webhook_headers:
                env["OH_WEBHOOKS_0_HEADERS"] = json.dumps(self.webhook_headers)
        env.update(self.extra_env)
        return env

    def start(self) -> Self:
        venv = ensure_agent_server_venv(self.venv)
        for path in (self.home, self.conversations_path, self.workspace_path):
            path.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        cmd = [
            str(venv / "bin" / "python"),
            "-m",
            "openhands.agent_server",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
        ]
        with open(self.log_path, "ab") as log:
            self._process = subprocess.Popen(
                cmd,
                cwd=self.base_dir,
                env=self.environment(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own process group: stop() ends its children too
            )
        try:
            self._wait_healthy()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_healthy(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + self.startup_timeout
        last_error = "no answer yet"
        while time.monotonic() < deadline:
            code = self._process.poll()
            if code is not None:
                raise AgentServerStartError(
                    f"agent-server exited with {code} before /health answered; "
                    f"log {self.log_path}:\n{_tail(self.log_path)}"
                )
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as response:
                    if response.status == 200:
                        return
                    last_error = f"status {response.status}"
            except (urllib.error.URLError, OSError) as exc:
                last_error = str(exc)
            time.sleep(0.1)
        raise AgentServerStartError(
            f"agent-server /health did not answer within {self.startup_timeout:.0f} s "
            f"({last_error}); log {self.log_path}:\n{_tail(self.log_path)}"
        )

    def user_messages(self, conversation_id: str) -> list[str]:
        """The texts of the user messages the conversation received, oldest first."""
        items = httpx.get(
            f"{self.url}/api/conversations/{conversation_id}/events/search",
            params={"kind": "MessageEvent", "source": "user", "limit": 100},
            headers=self.headers,
            timeout=10,
        ).json()["items"]
        return [part["text"] for item in items for part in item["llm_message"]["content"]]

    def working_dir(self, conversation_id: str) -> str:
        """The directory the conversation works in, as the agent-server reports it."""
        info = httpx.get(
            f"{self.url}/api/conversations/{conversation_id}", headers=self.headers, timeout=10
        ).json()
        return str(info["workspace"]["working_dir"])

    def log_tail(self, lines: int = 60) -> str:
        return _tail(self.log_path, lines)

    def stop(self, timeout: float = 10.0) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, sig)
            try:
                process.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue
        # Reap any straggler left in the group after the leader exited.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
