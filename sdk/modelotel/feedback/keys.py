"""The keys prediction ids are signed with (``MODELOTEL_FEEDBACK_KEY``), read once per process.

Without a configured key a process signs with 32 random bytes of its own: its ids work in it and in its forked
children (same key), and nowhere else, which ``ids.decode`` reports as ``feedback_id_unknown_key`` rather than a
forgery. A configured key is stretched to 32 bytes with SHA-256 under a fixed context, and its id is the first
four bytes of a second hash, so the id in a token reveals nothing about the key.
"""

from __future__ import annotations

import hashlib
import secrets
import threading

import modelotel.config as config

from .ids import KEY_ID_BYTES


def _derive(secret: str) -> tuple[bytes, bytes]:
    key = hashlib.sha256(b"modelotel prediction id key\x00" + secret.encode("utf-8", "surrogatepass")).digest()
    return key, hashlib.sha256(b"modelotel key id\x00" + key).digest()[:KEY_ID_BYTES]


class Keyring:
    """The signing key and every key an id may be signed with (the current one and ``PREVIOUS_KEYS``)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loaded = False
        self.configured = False
        self.key = b""
        self.key_id = b""
        self.accepted: dict[bytes, bytes] = {}
        self.settings: config.FeedbackSettings | None = None

    def load(self) -> Keyring:
        """Read the settings on first use (raises ConfigError for a bad key, once per attempt)."""
        if self._loaded:
            return self
        with self._lock:
            if not self._loaded:
                self._load_locked(config.feedback_settings())
        return self

    def reload(self, settings: config.FeedbackSettings | None = None) -> None:
        """Read the settings again (tests, and a process that changes its environment)."""
        with self._lock:
            self._load_locked(settings or config.feedback_settings())

    def _load_locked(self, settings: config.FeedbackSettings) -> None:
        if settings.key is None:
            self.key = secrets.token_bytes(32)
            self.key_id = hashlib.sha256(b"modelotel key id\x00" + self.key).digest()[:KEY_ID_BYTES]
        else:
            self.key, self.key_id = _derive(settings.key)
        self.configured = settings.key is not None
        self.accepted = {self.key_id: self.key}
        for previous in settings.previous_keys:
            key, key_id = _derive(previous)
            self.accepted.setdefault(key_id, key)
        self.settings = settings
        self._loaded = True


KEYRING = Keyring()
