"""The status page's routes (relay/admin/page.py): off without API_TOKEN, retrying a
failed job, and the login gating /github/setup in the whole app."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from db.job_kinds import JobStatus
from db.store import Store
from tests.support.admin_page import (
    PUBLIC_URL,
    agent_api,
    csrf_of,
    failed_job,
    harness,
    login,
    status_page,
    whole_app,
)
from tests.support.fake_agent_api import LoopbackAgentServer

# The shared fixtures, imported so that pytest finds them here.
__all__ = ["agent_api"]


async def test_without_api_token_every_admin_route_says_to_set_it(store: Store) -> None:
    async with harness(store, api_token=None) as h:
        for method, path in [
            ("GET", "/admin"),
            ("GET", "/admin/login"),
            ("POST", "/admin/login"),
            ("POST", "/admin/logout"),
            ("POST", "/admin/jobs/1/retry"),
        ]:
            response = await h.client.request(method, path, data={"token": ""})
            assert response.status_code == 404
            assert "set API_TOKEN" in response.text
            assert "set-cookie" not in response.headers


async def test_retry_queues_the_failed_job_again_and_says_so(store: Store) -> None:
    async with harness(store) as h:
        job_id = await failed_job(h.queue)
        await login(h.client)
        html = await status_page(h)
        assert f'id="failed-job-{job_id}"' in html
        assert "callback.reply" in html and "answered 404: no such hook" in html
        assert f'id="retry-{job_id}"' in html
        response = await h.client.post(f"/admin/jobs/{job_id}/retry", data={"csrf": csrf_of(html)})
        assert response.status_code == 303
        assert response.headers["location"] == "/admin"
        job = await h.queue.get(job_id)
        assert job is not None and job.status is JobStatus.QUEUED and job.attempts == 0
        after = await status_page(h)
        assert f"Job {job_id} is queued again." in after
        assert f'id="failed-job-{job_id}"' not in after
        # The message shows once; the page's own refresh does not repeat it.
        assert "queued again" not in await status_page(h)


async def test_retrying_a_job_that_is_not_failed_changes_nothing(store: Store) -> None:
    async with harness(store) as h:
        job_id = await failed_job(h.queue)
        await login(h.client)
        csrf = csrf_of(await status_page(h))
        await h.client.post(f"/admin/jobs/{job_id}/retry", data={"csrf": csrf})
        again = await h.client.post(f"/admin/jobs/{job_id}/retry", data={"csrf": csrf})
        assert again.status_code == 303
        assert "was not failed (any more)" in await status_page(h)
        missing = await h.client.post("/admin/jobs/999999/retry", data={"csrf": csrf})
        assert missing.status_code == 303


@pytest.mark.parametrize("spoil", ["no-field", "wrong", "other-session", "other-origin", "json"])
async def test_a_retry_without_the_sessions_form_token_is_403_and_changes_nothing(
    store: Store, spoil: str
) -> None:
    async with harness(store) as h:
        job_id = await failed_job(h.queue)
        await login(h.client)
        csrf = csrf_of(await status_page(h))
        kwargs: dict[str, Any] = {"data": {"csrf": csrf}}
        if spoil == "no-field":
            kwargs["data"] = {}
        elif spoil == "wrong":
            # The first character: the last one's low bits are padding, which base64
            # decoders ignore, so changing it may leave the same signature.
            kwargs["data"] = {"csrf": ("A" if csrf[0] != "A" else "B") + csrf[1:]}
        elif spoil == "other-session":
            async with httpx.AsyncClient(
                transport=h.client._transport, base_url=PUBLIC_URL
            ) as other:
                await login(other)
                kwargs["data"] = {"csrf": csrf_of((await other.get("/admin")).text)}
        elif spoil == "other-origin":
            kwargs["headers"] = {"Origin": "https://evil.example"}
        else:
            kwargs = {"json": {"csrf": csrf}}
        response = await h.client.post(f"/admin/jobs/{job_id}/retry", **kwargs)
        assert response.status_code == 403
        assert "Nothing was changed" in response.text
        job = await h.queue.get(job_id)
        assert job is not None and job.status is JobStatus.FAILED and job.attempts == 1


async def test_a_retry_without_a_session_is_403(store: Store) -> None:
    async with harness(store) as h:
        job_id = await failed_job(h.queue)
        response = await h.client.post(f"/admin/jobs/{job_id}/retry", data={"csrf": "x"})
        assert response.status_code == 403
        job = await h.queue.get(job_id)
        assert job is not None and job.status is JobStatus.FAILED


async def test_the_github_setup_page_needs_the_admin_session(
    tmp_path: Path, agent_api: LoopbackAgentServer
) -> None:
    async with whole_app(tmp_path, agent_api) as client:
        for path in ("/github/setup", "/github/setup/callback?code=abc&state=def"):
            response = await client.get(path)
            assert response.status_code == 303
            location = urlsplit(response.headers["location"])
            assert location.path == "/admin/login"
        first = await client.get("/github/setup?organization=acme")
        assert first.headers["location"] == "/admin/login?next=/github/setup%3Forganization%3Dacme"
        response = await login(client, then="/github/setup?organization=acme")
        assert response.headers["location"] == "/github/setup?organization=acme"
        page = await client.get("/github/setup?organization=acme")
        assert page.status_code == 200
        assert "Create the GitHub App in acme" in page.text
        assert (await client.get("/admin")).status_code == 200


async def test_without_api_token_the_github_setup_page_stays_open(
    tmp_path: Path, agent_api: LoopbackAgentServer
) -> None:
    async with whole_app(tmp_path, agent_api, api_token=None) as client:
        assert (await client.get("/github/setup")).status_code == 200
        assert (await client.get("/admin")).status_code == 404
