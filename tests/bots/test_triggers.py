"""What GitHub and GitLab comments share when deciding whether they call the bot."""

from __future__ import annotations

import pytest

from bots.triggers import infer_repository, mentions_bot, request_text

# -- infer_repository ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("please look at https://github.com/Acme/API/pull/3", "Acme/API"),
        ("<https://github.com/acme/api|acme/api> is broken", "acme/api"),
        ("see <https://github.com/acme/api/pull/3>", "acme/api"),
        ("https://github.com/acme/api/blob/main/README.md", "acme/api"),
        ("https://github.com/acme/api/tree/main", "acme/api"),
        ("https://github.com/acme/api/issues/12#issuecomment-1", "acme/api"),
        ("https://www.github.com/acme/api", "acme/api"),
        ("clone https://github.com/acme/api.git please", "acme/api"),
        ("https://github.com/acme/api.git/", "acme/api"),
        ("fix Acme/Widgets now", "Acme/Widgets"),
        ("fix Acme/Widgets.", "Acme/Widgets"),
        ("Acme/Widgets#12 fails", "Acme/Widgets"),
        ("my-org/my.repo_2", "my-org/my.repo_2"),
    ],
)
def test_infer_repository_finds_it(text: str, expected: str) -> None:
    assert infer_repository(text, "default/repo") == expected


def test_infer_repository_prefers_a_url_over_a_bare_name() -> None:
    text = "compare other/thing with https://github.com/acme/api/pull/3"
    assert infer_repository(text) == "acme/api"


@pytest.mark.parametrize(
    "text",
    [
        "https://gitlab.com/group/sub/project/-/issues/4",
        "https://gitlab.com/group/sub/project",
        "https://gitlab.com/group/sub/project/-/merge_requests/9",
    ],
)
def test_infer_repository_keeps_nested_gitlab_groups(text: str) -> None:
    assert infer_repository(text) == "group/sub/project"


def test_infer_repository_drops_a_sentence_full_stop() -> None:
    assert infer_repository("Look at https://github.com/Acme/API.") == "Acme/API"


def test_infer_repository_gitlab_with_two_segments() -> None:
    assert infer_repository("https://gitlab.com/acme/api/-/issues/4") == "acme/api"


@pytest.mark.parametrize(
    "text",
    [
        "can you do this and/or that",
        "Either/Or, Read/Write, input/output, yes/no, true/false",
        "it fails 1/2 of the time",
        "due 2024/05",
        "a user URL: https://github.com/acme",
        "mail foo@bar.com/baz",
        "nothing to see here",
        "",
    ],
)
def test_infer_repository_falls_back_to_the_default(text: str) -> None:
    assert infer_repository(text, "Default/Repo") == "Default/Repo"
    assert infer_repository(text) is None


def test_infer_repository_takes_a_file_path_for_a_repository() -> None:
    # A limitation of the bare owner/name form: a relative path looks the same.
    assert infer_repository("the bug is in src/main.py", "acme/api") == "src/main.py"


# -- mentions in GitHub/GitLab markdown -----------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("@openhands fix it", True),
        ("@OpenHands fix it", True),
        ("hey @openhands, fix it", True),
        ("(@openhands) fix it", True),
        ("fix it @openhands.", True),
        ("> @openhands fix it\n\n@openhands yes please", True),
        ("> @openhands fix it\n\nagreed", False),
        ("the bot is `@openhands`", False),
        ("```\n@openhands fix it\n```\nno mention", False),
        ("~~~sh\n@openhands\n", False),
        ("me@openhands.dev", False),
        ("@openhands-bot fix", False),
        ("@openhandsx fix", False),
        ("openhands fix it", False),
    ],
)
def test_mentions_bot_is_a_whole_word_outside_quotes_and_code(text: str, expected: bool) -> None:
    assert mentions_bot(text, "@openhands") is expected


def test_request_text_drops_the_mention_and_keeps_code() -> None:
    assert request_text("@OpenHands  fix `test_x` please", "@openhands") == ("fix `test_x` please")
