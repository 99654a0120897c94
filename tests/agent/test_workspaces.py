"""Every conversation works in a directory of its own, named after its repository."""

from __future__ import annotations

import pytest

from agent.workspaces import repository_dir_name, working_dir

CONVERSATION = "3f2c0d6e8a7b4c1d9e0f112233445566"


def test_a_conversation_about_a_repository_works_in_its_named_directory() -> None:
    assert working_dir("workspace", CONVERSATION, "acme/api") == f"workspace/{CONVERSATION}/api"
    assert working_dir("/srv/ws/", CONVERSATION, "grp/sub/app") == f"/srv/ws/{CONVERSATION}/app"


def test_a_conversation_without_a_repository_works_in_its_own_directory() -> None:
    assert working_dir("workspace", CONVERSATION) == f"workspace/{CONVERSATION}"
    assert working_dir("/", CONVERSATION, None) == f"/{CONVERSATION}"


def test_two_conversations_on_the_same_repository_never_share_a_directory() -> None:
    other = "0" * 32
    assert working_dir("ws", CONVERSATION, "acme/api") != working_dir("ws", other, "acme/api")


@pytest.mark.parametrize(
    ("repository", "name"),
    [
        ("acme/api", "api"),
        ("acme/api.js", "api.js"),
        ("acme/my repo", "my-repo"),
        ("acme/..", None),
        ("acme/../../etc", "etc"),
        ("acme/", "acme"),
    ],
)
def test_a_repository_name_is_made_safe_for_a_path(repository: str, name: str | None) -> None:
    assert repository_dir_name(repository) == name
