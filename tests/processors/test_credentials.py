"""processors/credentials.py: tokens served only to the capability, only during a turn,
renewed before they expire, kept encrypted, revoked when the turn ends."""

from __future__ import annotations

import pytest

from agent.checkout import CheckoutMode
from db.callbacks import CallbackStatus, ConversationCallback, insert_callback, save_callback
from db.secrets import SecretBox
from db.store import Store
from db.workspaces import Workspace, get_workspace, insert_workspace
from processors.credentials import (
    RENEW_BEFORE_SECONDS,
    Credentials,
    NoTurnInProgress,
    UnknownConversation,
    WrongCapability,
    capability_hash,
)
from processors.hosts import WorkspacePolicy
from processors.webhook import WebhookProcessor
from tests.support.fake_host import RecordingHost

CONVERSATION = "c0ffee00" * 4
CAPABILITY = "the-capability"


def workspace(mode: CheckoutMode = CheckoutMode.NEW_BRANCH) -> Workspace:
    return Workspace(
        conversation_id=CONVERSATION,
        host="github",
        repository="acme/api",
        locator="42",
        mode=mode.value,
        working_dir=f"workspace/{CONVERSATION}/api",
        base_branch="main",
        branch="openhands/12-c0ffee00" if mode is not CheckoutMode.FORK_HEAD else None,
        plan="{}",
        request="{}",
        capability_hash=capability_hash(CAPABILITY),
    )


async def active_turn(store: Store) -> ConversationCallback:
    processor = WebhookProcessor.model_validate(
        {"url": "https://r.example.test/", "secret": "s" * 16}
    )
    return await insert_callback(store, ConversationCallback.for_processor(CONVERSATION, processor))


@pytest.fixture
def host(monkeypatch: pytest.MonkeyPatch) -> RecordingHost:
    host = RecordingHost()
    monkeypatch.setattr("processors.credentials.now", lambda: host.clock)
    return host


def credentials(
    store: Store, host: RecordingHost, *, key: str | None = "k" * 32, **policy: str
) -> Credentials:
    return Credentials(store, {"github": host}, WorkspacePolicy(**policy), SecretBox(key))


async def test_unknown_conversation_and_token_name_are_not_found(
    store: Store, host: RecordingHost
) -> None:
    served = credentials(store, host)
    with pytest.raises(UnknownConversation):
        await served.serve(CONVERSATION, "GITHUB_TOKEN", CAPABILITY)
    await insert_workspace(store, workspace())
    with pytest.raises(UnknownConversation):
        await served.serve(CONVERSATION, "GITLAB_TOKEN", CAPABILITY)


async def test_a_wrong_capability_is_refused(store: Store, host: RecordingHost) -> None:
    await insert_workspace(store, workspace())
    await active_turn(store)
    with pytest.raises(WrongCapability):
        await credentials(store, host).serve(CONVERSATION, "GITHUB_TOKEN", "guess")
    assert host.minted == []


async def test_no_token_without_a_turn_in_progress(store: Store, host: RecordingHost) -> None:
    await insert_workspace(store, workspace())
    callback = await active_turn(store)
    callback.status = CallbackStatus.COMPLETED
    await save_callback(store, callback)

    with pytest.raises(NoTurnInProgress):
        await credentials(store, host).serve(CONVERSATION, "GITHUB_TOKEN", CAPABILITY)
    assert host.minted == []


async def test_the_same_token_until_ten_minutes_before_it_expires(
    store: Store, host: RecordingHost
) -> None:
    await insert_workspace(store, workspace())
    await active_turn(store)
    served = credentials(store, host)

    first = await served.serve(CONVERSATION, "github_token", CAPABILITY)
    host.clock += 3600 - RENEW_BEFORE_SECONDS - 1
    again = await served.serve(CONVERSATION, "GITHUB_TOKEN", CAPABILITY)
    host.clock += 2
    renewed = await served.serve(CONVERSATION, "GITHUB_TOKEN", CAPABILITY)

    assert first == again == "ghs_token1" and renewed == "ghs_token2"
    assert host.minted == [("ghs_token1", True), ("ghs_token2", True)]


@pytest.mark.parametrize(
    ("mode", "policy", "write"),
    [
        (CheckoutMode.FORK_HEAD, {}, False),
        (CheckoutMode.READ_ONLY, {}, False),
        (CheckoutMode.NEW_BRANCH, {"pull_requests": "off"}, False),
        (CheckoutMode.HEAD_BRANCH, {"pull_requests": "ready"}, True),
    ],
)
async def test_read_only_checkouts_get_read_tokens(
    store: Store, host: RecordingHost, mode: CheckoutMode, policy: dict[str, str], write: bool
) -> None:
    await insert_workspace(store, workspace(mode))
    await active_turn(store)
    await credentials(store, host, **policy).serve(CONVERSATION, "GITHUB_TOKEN", CAPABILITY)
    assert host.minted == [("ghs_token1", write)]


async def test_the_stored_token_is_encrypted_and_revoked_at_the_end(
    store: Store, host: RecordingHost
) -> None:
    await insert_workspace(store, workspace())
    await active_turn(store)
    served = credentials(store, host)
    token = await served.serve(CONVERSATION, "GITHUB_TOKEN", CAPABILITY)
    row = await get_workspace(store, CONVERSATION)
    assert row is not None and row.token_ciphertext and token not in row.token_ciphertext

    await served.revoke(CONVERSATION)

    assert host.revoked == [token]
    row = await get_workspace(store, CONVERSATION)
    assert row is not None and row.token_ciphertext is None and row.token_expires_at is None


async def test_without_secret_key_no_token_reaches_the_database(
    store: Store, host: RecordingHost
) -> None:
    await insert_workspace(store, workspace())
    await active_turn(store)
    served = credentials(store, host, key=None)
    token = await served.serve(CONVERSATION, "GITHUB_TOKEN", CAPABILITY)
    assert await served.serve(CONVERSATION, "GITHUB_TOKEN", CAPABILITY) == token

    row = await get_workspace(store, CONVERSATION)
    assert row is not None and row.token_ciphertext is None
    await served.revoke(CONVERSATION)
    assert host.revoked == [token]
