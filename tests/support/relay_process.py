"""agent-relay as a real process (`agent-relay serve`, uvicorn on loopback) for e2e tests.

It can be killed (SIGKILL, as a crash) and started again on the same database and
port, which is how the e2e tests show that nothing is lost across restarts.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import httpx
import pytest

from tests.support.agent_server import AgentServerProcess
from tests.support.fake_llm import FakeLLM
from tests.support.waiting import wait_until

RELAY_BIN = Path(sys.executable).parent / "agent-relay"
API_TOKEN = "e2e-api-token"
CONVERSATION_URL = "https://agent.example.test/conversations/{conversation_id}"


def database_for(request: pytest.FixtureRequest, kind: str, workdir: Path) -> str:
    """A fresh database of `kind` ("sqlite" or "postgresql") for one relay."""
    if kind == "sqlite":
        return f"sqlite:///{workdir / 'relay.db'}"
    from tests.conftest import reset_postgres

    url: str = request.getfixturevalue("postgres_url")
    asyncio.run(reset_postgres(url))
    return url


def relay_environment(
    *,
    workdir: Path,
    database_url: str,
    port: int,
    agent_server: AgentServerProcess,
    fake_llm: FakeLLM,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    (workdir / "workspace").mkdir(exist_ok=True)
    inherited = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AGENT_", "API_TOKEN", "SLACK_", "GITHUB_", "GITLAB_", "SECRET_"))
    }
    return {
        **inherited,
        "DATABASE_URL": database_url,
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "API_TOKEN": API_TOKEN,
        "AGENT_SERVER_URL": agent_server.url,
        "AGENT_SERVER_API_KEY": agent_server.api_key,
        "AGENT_LLM_MODEL": "openai/fake-model",
        "AGENT_LLM_API_KEY": "fake-llm-key",
        "AGENT_LLM_BASE_URL": fake_llm.base_url,
        "AGENT_LLM_EXTRA": json.dumps({"num_retries": 0, "api_mode": "chat"}),
        "AGENT_WORKSPACE_ROOT": str(workdir / "workspace"),
        "AGENT_CONVERSATION_URL": CONVERSATION_URL,
        "LOG_LEVEL": "DEBUG",
        # The e2e webhook receivers listen on 127.0.0.1.
        "WEBHOOK_ALLOW_PRIVATE_NETWORKS": "true",
        **(extra or {}),
    }


class RelayProcess:
    def __init__(self, workdir: Path, env: dict[str, str]) -> None:
        self.workdir = workdir
        self.env = env
        self.url = f"http://127.0.0.1:{env['PORT']}"
        self.log_path = workdir / "relay.log"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> RelayProcess:
        subprocess.run(
            [RELAY_BIN, "migrate"], cwd=self.workdir, env=self.env, check=True, timeout=60
        )
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                [RELAY_BIN, "serve"],
                cwd=self.workdir,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_until(
            lambda: _answers(f"{self.url}/readyz"),
            timeout=30,
            message=lambda: f"agent-relay did not become ready:\n{self.log_tail()}",
        )
        return self

    def kill(self) -> None:
        """SIGKILL: no shutdown, no chance to finish or release anything."""
        assert self._process is not None
        self._process.kill()
        self._process.wait()
        self._process = None

    def stop(self) -> None:
        if self._process is None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process = None

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text()[-chars:] if self.log_path.exists() else ""

    def api(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {API_TOKEN}"}, timeout=10
        )

    def callbacks(self, **filters: str) -> list[dict[str, object]]:
        with self.api() as api:
            response = api.get("/api/callbacks", params={**filters, "limit": "200"})
        response.raise_for_status()
        return list(response.json()["callbacks"])

    def job_total(self) -> float:
        """Jobs of every status (from /metrics): unchanged means nothing was queued."""
        text = httpx.get(f"{self.url}/metrics", timeout=5).text
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("agent_relay_jobs{")
        )

    def idle(self) -> bool:
        """No job due or running (parsed from /metrics); the hourly maintenance job
        waiting for its hour does not count."""
        text = httpx.get(f"{self.url}/metrics", timeout=5).text
        busy = [
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith(("agent_relay_jobs_due ", 'agent_relay_jobs{status="running"}'))
        ]
        return len(busy) == 2 and sum(busy) == 0


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
