"""Page tokens encrypted at rest: Fernet keys from TOKEN_ENCRYPTION_KEYS, rotation possible.

The first key encrypts; every key decrypts (MultiFernet), so a new key goes first, the old one
stays until `rotate` has re-encrypted what it sealed, then leaves. A local run with no key set
gets one generated under `var/` (shared/config/local_secrets.py): fine for a demo; production
refuses to start without TOKEN_ENCRYPTION_KEYS (APP_ENV).
"""

from __future__ import annotations

from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from shared.config.local_secrets import LOCAL_DIR, local_secret

#: Where a local run keeps the key it generated when TOKEN_ENCRYPTION_KEYS is empty.
LOCAL_KEY_FILE = LOCAL_DIR / "token-encryption.key"


class TokenCipherError(ValueError):
    """A key that is not a Fernet key, or a stored token no configured key opens."""


class TokenCipher:
    def __init__(self, keys: str) -> None:
        parts = [part.strip() for part in keys.split(",") if part.strip()]
        if not parts:
            raise TokenCipherError("TOKEN_ENCRYPTION_KEYS holds no key")
        try:
            self._fernet = MultiFernet([Fernet(part.encode()) for part in parts])
        except ValueError:
            # The message names no key: it would put the secret in a log.
            raise TokenCipherError(
                "TOKEN_ENCRYPTION_KEYS: each key must be a Fernet key "
                "(32 url-safe base64-encoded bytes)"
            ) from None

    def __repr__(self) -> str:
        return "TokenCipher(<keys hidden>)"

    def encrypt(self, token: str) -> bytes:
        return self._fernet.encrypt(token.encode())

    def decrypt(self, sealed: bytes) -> str:
        try:
            return self._fernet.decrypt(sealed).decode()
        except InvalidToken:
            raise TokenCipherError(
                "no key in TOKEN_ENCRYPTION_KEYS opens this token "
                "(was the key that sealed it removed?)"
            ) from None

    def rotate(self, sealed: bytes) -> bytes:
        """The token sealed again under the first key."""
        return self._fernet.rotate(sealed)


def cipher_from_setting(keys: str, local_key_file: Path = LOCAL_KEY_FILE) -> TokenCipher:
    """The cipher for TOKEN_ENCRYPTION_KEYS, or for a local key generated once under var/."""
    if keys.strip():
        return TokenCipher(keys)
    return TokenCipher(_local_key(local_key_file))


def _local_key(path: Path) -> str:
    return local_secret(path, lambda: Fernet.generate_key().decode())
