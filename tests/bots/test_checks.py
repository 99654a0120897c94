"""bots/checks.py: the line a result prints."""

from __future__ import annotations

from bots.checks import CheckResult


def test_lines_have_the_documented_shape() -> None:
    assert CheckResult("schema", "ok", "version 9, current").line() == (
        "ok   schema: version 9, current"
    )
    assert CheckResult("gitlab", "fail", "GET /user refused", "set GITLAB_TOKEN").line() == (
        "FAIL gitlab: GET /user refused -> set GITLAB_TOKEN"
    )
    assert CheckResult("public url", "skip", "unset", "set PUBLIC_URL").line() == (
        "skip public url: unset -> set PUBLIC_URL"
    )
