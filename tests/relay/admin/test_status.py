"""What the status page shows (relay/admin/status.py, outbound.py): counts, health,
recent mentions, the outbound checks (cached, failing, broken), never a secret; and
in the whole app, doctor's own checks against the fakes on loopback."""

from __future__ import annotations

import re
import socket
import uuid
from pathlib import Path

from bots.checks import fail, ok, skip, warn
from bots.github.reply import GithubCallbackProcessor
from bots.gitlab.reply import GitlabCallbackProcessor
from bots.gitlab.triggers import Noteable
from bots.slack.reply import SlackCallbackProcessor
from db.deliveries import record_delivery
from db.marks import run_record, write_mark
from db.store import Store
from processors.reconcile import ReconcileRun
from tests.support.admin_page import (
    API_TOKEN,
    GITHUB_APP_ID,
    SLACK_TOKEN,
    CountingChecks,
    Platforms,
    agent_api,
    failed_job,
    github_keys,
    harness,
    login,
    mention,
    platforms,
    row,
    status_page,
    whole_app,
)
from tests.support.fake_agent_api import (
    AGENT_API_KEY,
    WEBHOOK_SECRET,
    LoopbackAgentServer,
    insert_webhook_callback,
)

# The shared fixtures, imported so that pytest finds them here.
__all__ = ["agent_api", "github_keys", "platforms"]


async def test_the_page_shows_counts_health_and_recent_mentions(store: Store) -> None:
    async with harness(
        store,
        slack_signing_secret="slack-signing-secret",
        slack_bot_token="xoxb-slack-bot-token",
        gitlab_url="https://gitlab.example.com",
        gitlab_token="glpat-gitlab-token",
        gitlab_webhook_secret="gitlab-hook-secret",
    ) as h:
        await failed_job(h.queue)
        slack_conversation = await mention(
            store,
            h.queue,
            "slack",
            "T0001:C0002:1700000000.000100",
            SlackCallbackProcessor(
                team_id="T0001",
                channel="C0002",
                thread_ts="1700000000.000100",
                user="U1",
                trigger_ts="1700000000.000100",
            ),
        )
        processor = GithubCallbackProcessor(
            installation_id=1, repository="acme/web", number=12, asker="ada"
        )
        await mention(store, h.queue, "github", "acme/web#12", processor)
        await mention(store, h.queue, "github", "acme/web#13/r4567", processor)
        gitlab_processor = GitlabCallbackProcessor(
            project_id=42, noteable=Noteable.MERGE_REQUEST, iid=5, username="ada"
        )
        await mention(
            store, h.queue, "gitlab", "42:merge_request:5", gitlab_processor, project="grp/sub/app"
        )
        await mention(store, h.queue, "gitlab", "43:issue:6", gitlab_processor)
        await store.execute(
            "INSERT INTO agent_conversations (conversation_id, execution_status, updated_at)"
            " VALUES (:id, 'running', 1)",
            {"id": slack_conversation},
        )
        await record_delivery(store, "slack", "Ev0001")
        await login(h.client)
        html = await status_page(h)

    def cell(element_id: str) -> str:
        match = re.search(rf'id="{element_id}">([^<]*)<', html)
        assert match is not None, element_id
        return match.group(1)

    assert cell("jobs-failed") == "1"
    assert cell("jobs-queued") == "5"  # the five conversation.start jobs
    assert cell("callbacks-active") == "5"
    assert cell("callbacks-completed") == "0"
    slack_row = html[html.index('id="health-slack"') : html.index('id="health-github"')]
    assert "configured</span>: one workspace" in slack_row and "not checked" in slack_row
    assert "never" not in slack_row  # its last event is shown
    github_row = html[html.index('id="health-github"') : html.index('id="health-gitlab"')]
    assert "not configured" in github_row
    gitlab_row = html[html.index('id="health-gitlab"') : html.index("</tbody>")]
    assert "https://gitlab.example.com" in gitlab_row and "never" in gitlab_row
    agent_row = html[html.index('id="health-agent"') : html.index('id="health-slack"')]
    assert '<span class="ok">ok</span>' in agent_row and "http://agent.test" in agent_row
    assert "https://slack.com/app_redirect?team=T0001&amp;channel=C0002" in html
    assert "C0002 thread 1700000000.000100" in html
    assert 'href="https://github.com/acme/web/issues/12"' in html
    assert 'href="https://github.com/acme/web/pull/13#discussion_r4567"' in html
    assert 'href="https://gitlab.example.com/grp/sub/app/-/merge_requests/5"' in html
    assert "grp/sub/app!5" in html
    # No project path known for this one: GitLab sends /projects/{id} to the project.
    assert 'href="https://gitlab.example.com/projects/43"' in html
    assert f'href="https://agent.example.test/conversations/{slack_conversation}"' in html
    assert "running" in html


async def test_conversations_show_as_plain_ids_without_a_link_template(store: Store) -> None:
    async with harness(store, agent_conversation_url=None) as h:
        processor = GithubCallbackProcessor(
            installation_id=1, repository="acme/web", number=12, asker="ada"
        )
        conversation_id = await mention(store, h.queue, "github", "acme/web#12", processor)
        await login(h.client)
        html = await status_page(h)
        assert f"<code>{conversation_id}</code>" in html
        assert "agent.example.test" not in html


async def test_the_page_shows_what_the_last_reconciliation_found(store: Store) -> None:
    async with harness(store) as h:
        await login(h.client)
        assert 'id="no-recovery"' in await status_page(h)
        run = ReconcileRun(at=1_700_000_000.0, quiet=3, stopped=1, lost=1, running=1)
        await write_mark(store, "reconcile", {"last_run": run_record("Reconciliation", run)})
        await write_mark(store, "unrelated", {"cursor": 5})
        html = await status_page(h)

    [row_html] = re.findall(r'<tr class="recovery-run">(.*?)</tr>', html, re.S)
    assert "Reconciliation" in row_html
    assert "3 quiet conversations: 1 stopped, 1 lost, 1 running" in row_html
    assert "Stopped early" not in row_html


async def test_no_secret_reaches_the_page(store: Store, tmp_path: Path) -> None:
    secrets = {
        "api_token": API_TOKEN,
        "secret_key": "the-secret-key-of-this-relay-0123",
        "agent_server_api_key": AGENT_API_KEY,
        "agent_webhook_secret": "agent-webhook-secret-0123",
        "agent_llm_api_key": "sk-llm-key-0123456789",
        "slack_signing_secret": "slack-signing-secret-0123",
        "slack_bot_token": "xoxb-0123-slack-bot-token",
        "slack_client_secret": "slack-client-secret-0123",
        "github_webhook_secret": "github-webhook-secret-0123",
        "github_private_key": "-----BEGIN RSA PRIVATE KEY-----\\nMIIEkeymaterial\\n-----END",
        "gitlab_token": "glpat-gitlab-token-0123",
        "gitlab_webhook_secret": "gitlab-webhook-secret-0123",
    }
    async with harness(
        store,
        **secrets,
        github_app_id="1234",
        slack_client_id="123.456",
        agent_server_url="http://operator:agent-url-password@agent.test",
    ) as h:
        await failed_job(h.queue)
        await insert_webhook_callback(store, uuid.uuid4().hex)
        pages = [(await h.client.get("/admin/login")).text]
        await login(h.client)
        pages.append(await status_page(h))
    for page in pages:
        for name, value in [*secrets.items(), ("webhook", WEBHOOK_SECRET)]:
            assert value not in page, name
        assert "MIIEkeymaterial" not in page and "agent-url-password" not in page
    assert "http://agent.test" in pages[1]


async def test_outbound_checks_are_asked_at_most_once_a_minute(store: Store) -> None:
    checks = CountingChecks(
        [
            ok("slack", "bot @relay in Acme (T0ACME)"),
            skip("github", "not configured"),
            ok("gitlab", "token works as @relay-bot (user 9)"),
            skip("gitlab webhook", "no project named", "pass --gitlab-project"),
        ]
    )
    async with harness(
        store,
        checks=checks,
        slack_signing_secret="s" * 20,
        slack_bot_token="xoxb-1",
        gitlab_token="glpat-1",
        gitlab_webhook_secret="g" * 20,
    ) as h:
        await login(h.client)
        html = await status_page(h)
        await status_page(h)
        assert (checks.agent_calls, checks.platform_calls) == (1, 1)
        h.clock.now += 61
        await status_page(h)
        assert (checks.agent_calls, checks.platform_calls) == (2, 2)
    slack = row(html, "slack")
    assert '<span class="ok">valid</span>' in slack and "bot @relay in Acme (T0ACME)" in slack
    gitlab = row(html, "gitlab")
    assert '<span class="ok">valid</span>' in gitlab and "@relay-bot" in gitlab
    # A check that was not made (no project to look at) is not news on the page.
    assert "--gitlab-project" not in gitlab
    assert "not checked" not in row(html, "github")  # not configured: nothing to check
    assert re.search(r'<span class="ok">ok</span>\s*</td>', row(html, "agent"))


async def test_a_failing_check_shows_its_detail_and_its_fix(store: Store) -> None:
    checks = CountingChecks(
        [
            ok("slack workspace T1", "bot @relay in One (T1)"),
            fail("slack workspace T2", "token refused: slack auth.test: invalid_auth", "reinstall"),
            warn(
                "github app", "no app yet", "create one at https://relay.example.com/github/setup"
            ),
            skip("github installations", "the app check failed"),
        ],
        agent_results=[
            ok("agent-server", "http://agent.test answers"),
            fail("agent-server key", "refused X-Session-API-Key (HTTP 401)", "set the key"),
        ],
    )
    async with harness(
        store,
        checks=checks,
        slack_signing_secret="s" * 20,
        slack_client_id="123.456",
        slack_client_secret="c" * 20,
        secret_key="k" * 32,
        github_app_id=None,
    ) as h:
        await login(h.client)
        html = await status_page(h)
    slack = row(html, "slack")
    assert '<span class="bad">not valid</span>' in slack
    assert "slack workspace T1</span>: bot @relay in One (T1)" in slack
    assert "slack workspace T2</span>: token refused: slack auth.test: invalid_auth" in slack
    assert "Fix: reinstall" in slack
    assert "Fix:" not in slack.partition("slack workspace T2")[0]  # none for the one that works
    # github_mode is "setup" here (SECRET_KEY, no GITHUB_APP_ID): the page's app.
    github = row(html, "github")
    assert '<span class="unknown">needs attention</span>' in github
    assert "Fix: create one at https://relay.example.com/github/setup" in github
    assert "the app check failed" not in github  # a skip behind the failure says nothing
    agent = row(html, "agent")
    assert '<span class="bad">failing</span>' in agent
    assert "refused X-Session-API-Key (HTTP 401)" in agent and "Fix: set the key" in agent


async def test_failing_outbound_checks_leave_the_rest_of_the_page(store: Store) -> None:
    checks = CountingChecks(error=RuntimeError("boom with a token-123 inside"))
    async with harness(
        store, checks=checks, slack_signing_secret="s" * 20, slack_bot_token="x"
    ) as h:
        await login(h.client)
        html = await status_page(h)
    assert "The outbound checks could not run: they broke (RuntimeError)" in html
    assert "token-123" not in html
    assert 'id="jobs-failed"' in html
    assert "not checked" in row(html, "slack")


async def test_the_page_shows_the_doctors_checks_of_working_credentials(
    tmp_path: Path, agent_api: LoopbackAgentServer, platforms: Platforms
) -> None:
    async with whole_app(tmp_path, agent_api, **platforms.settings()) as client:
        await login(client)
        response = await client.get("/admin")
    assert response.status_code == 200
    html = response.text
    assert re.search(r'<span class="ok">ok</span>\s*</td>', row(html, "agent"))
    slack = row(html, "slack")
    assert '<span class="ok">valid</span>' in slack
    assert "bot @bot-u0bot in Workspace T0ACME (T0ACME)" in slack
    github = row(html, "github")
    assert '<span class="ok">valid</span>' in github
    assert f"relay-admin (id {GITHUB_APP_ID}, from settings)" in github
    assert "1 installation(s): acme" in github
    gitlab = row(html, "gitlab")
    assert '<span class="ok">valid</span>' in gitlab and "token works as @openhands" in gitlab
    assert "Fix:" not in html
    assert [call.method for call in platforms.slack.calls()] == ["auth.test"]


async def test_credentials_a_platform_refuses_show_as_not_valid_with_the_fix(
    tmp_path: Path,
    agent_api: LoopbackAgentServer,
    platforms: Platforms,
    github_keys: tuple[str, str],
) -> None:
    platforms.slack.revoke_token(SLACK_TOKEN)  # auth.test answers invalid_auth
    refused = {
        **platforms.settings(),
        # A key GitHub never saw: GET /app answers 401 to the JWT it signs.
        "github_private_key": github_keys[1],
        "gitlab_token": "glpat-revoked-admin-page-token",
        "agent_server_api_key": "an-agent-key-nobody-accepts",
    }
    async with whole_app(tmp_path, agent_api, **refused) as client:
        await login(client)
        html = (await client.get("/admin")).text

    slack = row(html, "slack")
    assert '<span class="bad">not valid</span>' in slack
    assert "token refused: slack auth.test: invalid_auth" in slack
    assert "Fix: set SLACK_BOT_TOKEN to the app's Bot User OAuth Token" in slack
    github = row(html, "github")
    assert '<span class="bad">not valid</span>' in github
    assert "GET /app refused the app's JWT (HTTP 401)" in github
    assert "Fix: check GITHUB_APP_ID and GITHUB_PRIVATE_KEY(_PATH)" in github
    gitlab = row(html, "gitlab")
    assert '<span class="bad">not valid</span>' in gitlab
    assert "GET /user refused GITLAB_TOKEN (HTTP 401)" in gitlab
    assert "Fix: set GITLAB_TOKEN to a valid access token with scope api" in gitlab
    agent = row(html, "agent")
    assert '<span class="bad">failing</span>' in agent
    assert "refused X-Session-API-Key (HTTP 401)" in agent
    assert "Fix: set AGENT_SERVER_API_KEY" in agent
    for name, value in refused.items():
        if name.endswith(("token", "secret", "key")):
            assert value not in html, name
    for secret in (API_TOKEN, github_keys[0], "the-secret-key-of-this-relay-0123"):
        assert secret not in html
    assert "BEGIN" not in html


async def test_an_agent_server_that_does_not_answer_is_failing(
    tmp_path: Path, agent_api: LoopbackAgentServer
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}"
    with_password = closed.replace("//", "//operator:agent-url-password@")
    async with whole_app(tmp_path, agent_api, agent_server_url=with_password) as client:
        await login(client)
        html = (await client.get("/admin")).text
    assert "agent-url-password" not in html
    agent = row(html, "agent")
    assert '<span class="bad">failing</span>' in agent
    assert f"{closed} does not answer (ConnectError)" in agent
    assert "Fix: start the agent-server, or fix AGENT_SERVER_URL" in agent
