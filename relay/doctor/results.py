"""What a result may say: never a secret, never a password in a URL, errors on one line."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from urllib.parse import urlsplit, urlunsplit

from pydantic import SecretStr

from bots.checks import CheckResult
from relay.settings import Settings

# Secrets shorter than this are not scrubbed from texts: replacing every "abc" in
# a line would garble it while hiding nothing worth hiding.
_MIN_SCRUBBED_SECRET_CHARS = 6


class Scrubber:
    """Replaces the configured secrets, and those read during a run, with `***`."""

    def __init__(self, settings: Settings) -> None:
        self._secrets = set(_configured_secrets(settings))

    def add(self, secret: str) -> None:
        self._secrets.add(secret)

    def scrubbed(self, results: Iterable[CheckResult]) -> list[CheckResult]:
        secrets = sorted(
            (s for s in self._secrets if len(s) >= _MIN_SCRUBBED_SECRET_CHARS),
            key=len,
            reverse=True,
        )

        def scrub(text: str) -> str:
            for secret in secrets:
                text = text.replace(secret, "***")
            return text

        return [
            replace(r, detail=scrub(r.detail), fix=scrub(r.fix) if r.fix else r.fix)
            for r in results
        ]


def _configured_secrets(settings: Settings) -> Iterable[str]:
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if isinstance(value, SecretStr):
            yield value.get_secret_value()
    password = urlsplit(settings.database_url).password
    if password:
        yield password
    try:
        private_key = settings.github_private_key_text()
    except OSError:
        private_key = None
    if private_key:
        yield private_key


def display_url(url: str) -> str:
    """`url` without user name and password, to be printed."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit(parts._replace(netloc=netloc))


def error_text(exc: BaseException) -> str:
    """An error no check expected, by its kind and its first words."""
    text = " ".join(str(exc).split())[:200]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
