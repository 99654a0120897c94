"""Encryption at rest for stored credentials (Slack bot tokens, GitHub App keys).

Fernet (AES-128-CBC with HMAC-SHA256, from `cryptography`) does the encryption; its
key is derived from SECRET_KEY with HKDF, so any long random string works as
SECRET_KEY and the stored key is never SECRET_KEY itself.
"""

from __future__ import annotations

import base64

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from pydantic import SecretStr

# Changing this label makes every stored credential unreadable: it is part of the key.
_KEY_PURPOSE = b"agent-relay stored credentials v1"
MIN_SECRET_KEY_CHARS = 16


class SecretKeyMissing(RuntimeError):
    """Credentials must be stored, and SECRET_KEY is not set."""


class CredentialsUnreadable(RuntimeError):
    """Stored credentials do not decrypt with this SECRET_KEY (changed or corrupted)."""


class SecretBox:
    def __init__(self, secret_key: str | None) -> None:
        self._fernet: Fernet | None = None
        if secret_key:
            if len(secret_key) < MIN_SECRET_KEY_CHARS:
                raise ValueError(f"SECRET_KEY must be at least {MIN_SECRET_KEY_CHARS} characters")
            derived = HKDF(
                algorithm=hashes.SHA256(), length=32, salt=None, info=_KEY_PURPOSE
            ).derive(secret_key.encode())
            self._fernet = Fernet(base64.urlsafe_b64encode(derived))

    @property
    def available(self) -> bool:
        return self._fernet is not None

    def _require(self) -> Fernet:
        if self._fernet is None:
            raise SecretKeyMissing("set SECRET_KEY to store credentials (it encrypts them)")
        return self._fernet

    def encrypt(self, plaintext: str) -> str:
        return self._require().encrypt(plaintext.encode()).decode()

    def decrypt(self, token: str) -> str:
        try:
            return self._require().decrypt(token.encode()).decode()
        except InvalidToken:
            raise CredentialsUnreadable(
                "stored credentials do not decrypt: SECRET_KEY changed or the row is corrupt"
            ) from None


def secret_text(value: SecretStr | None) -> str | None:
    """A setting's secret as text, for the one call that needs it (never for a log)."""
    return value.get_secret_value() if value is not None else None
