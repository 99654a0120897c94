"""The turn's status message as each platform shows it."""

from __future__ import annotations

from bots.texts import duration, status_text
from processors.status import Outcome, TurnStatus

URL = "https://agent.example/conversations/abc"


def test_durations_read_as_people_say_them() -> None:
    assert [duration(s) for s in (0, 40, 133, 180, 3900, 7200)] == [
        "0s",
        "40s",
        "2m 13s",
        "3m",
        "1h 5m",
        "2h",
    ]


def test_progress_shows_the_step_count_time_repository_and_link() -> None:
    status = TurnStatus(4, "Run the unit tests", 65, URL, "acme/api", "openhands/12-ab")
    assert status_text(status) == (
        "Working on it: Run the unit tests\n"
        f"4 steps · 1m 5s · acme/api on openhands/12-ab · [conversation]({URL})"
    )
    assert status_text(TurnStatus(0, None, None, None)) == "On it! Starting…\n0 steps"


def test_outcomes() -> None:
    done = TurnStatus(5, None, 133, URL, outcome=Outcome.DONE)
    assert status_text(done).startswith("Done in 2m 13s.\n5 steps · [conversation]")
    failed = TurnStatus(1, None, 40, None, outcome=Outcome.FAILED)
    assert status_text(failed) == "Failed after 40s.\n1 step"
    stopped = TurnStatus(2, None, 180, None, outcome=Outcome.STOPPED, stopped_by="@alice")
    assert status_text(stopped) == "Stopped by @alice after 3m.\n2 steps"
    slack = status_text(done, lambda url, label: f"<{url}|{label}>")
    assert f"<{URL}|conversation>" in slack


def test_a_turn_without_steps_ends_without_counting_them() -> None:
    answered = TurnStatus(0, None, 12, URL, outcome=Outcome.DONE)
    assert status_text(answered) == f"Done in 12s.\n[conversation]({URL})"
    assert status_text(TurnStatus(0, None, 3, None, outcome=Outcome.DONE)) == "Done in 3s."


def test_the_on_it_note_stays_in_the_status_to_the_end() -> None:
    note = "I can't reach acme/secret from here, so I'll work without a checkout."
    working = TurnStatus(1, "Read the README", 5, None, note=note)
    assert status_text(working) == f"Working on it: Read the README\n1 step · 5s\n{note}"
    done = TurnStatus(1, None, 9, None, outcome=Outcome.DONE, note=note)
    assert status_text(done).endswith(f"\n{note}")
