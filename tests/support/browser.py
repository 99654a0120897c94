"""Debian's headless Chromium for the page tests, driven by playwright.

playwright must never download a browser: it is pointed at the system one. Where
that is not installed, a developer's run skips the page tests; a CI run (CI set, as
CI services do) does not, because .ci/run installs Chromium: there a missing browser
is a failure to see, not a test to leave out.
"""

from __future__ import annotations

import os
import shutil

import pytest
from playwright.sync_api import Browser, Playwright

CHROMIUM = "/usr/bin/chromium"

needs_chromium = pytest.mark.skipif(
    shutil.which(CHROMIUM) is None and not os.environ.get("CI"),
    reason=f"Debian's chromium is not installed at {CHROMIUM}",
)


def launch_chromium(playwright: Playwright) -> Browser:
    """Headless Chromium; --no-sandbox because the tests run as root here."""
    return playwright.chromium.launch(
        executable_path=CHROMIUM, args=["--no-sandbox"], headless=True
    )
