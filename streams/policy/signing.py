"""Ed25519 signatures over policy feed bodies.

The feed server alone holds the private key; every filter holds only public
keys (``dnspolicy::verify`` on the Rust side), so reading a sidecar's plugin
configuration is not enough to forge a policy. A key has an id, and filters
accept up to two public keys, so a key is rotated without a gap: give the
filters the new public key beside the old, switch the feed server to the new
private key, then drop the old public key.

Header: ``X-Dnsguard-Signature: keyid=<id>,alg=ed25519,sig=<base64url, no padding>``.
Keys travel as base64 (standard alphabet): the 32-byte private seed, as
``<id>:<base64>`` in ``DNSGUARD_FEED_SIGNING_KEY`` (or a file named by
``DNSGUARD_FEED_SIGNING_KEY_FILE``), and the 32-byte public key in the
filter's ``feed.keys``. ``dnsguard keys new`` makes a pair.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

SIGNATURE_HEADER = "X-Dnsguard-Signature"
_KEY_ID = re.compile(r"[A-Za-z0-9_-]{1,64}", re.ASCII)


class SigningError(ValueError):
    """A key or signature that cannot be used; the message says why."""


def _b64decode(text: str) -> bytes:
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=False)
    except (binascii.Error, ValueError) as exc:
        raise SigningError(f"not base64: {exc}") from exc


def _check_id(key_id: str) -> str:
    if not _KEY_ID.fullmatch(key_id):
        raise SigningError(f"key id {key_id!r}: 1 to 64 of [A-Za-z0-9_-]")
    return key_id


@dataclass(frozen=True, slots=True)
class SigningKey:
    """The feed server's private key, with its id. ``repr`` never shows the key."""

    id: str
    _private: Ed25519PrivateKey

    def __repr__(self) -> str:
        return f"SigningKey(id={self.id!r}, public={self.public_b64})"

    @classmethod
    def parse(cls, text: str) -> SigningKey:
        """From ``<id>:<base64 of the 32-byte seed>``."""
        key_id, sep, seed_text = text.strip().partition(":")
        if not sep:
            raise SigningError("expected <id>:<base64 seed>")
        seed = _b64decode(seed_text.strip())
        if len(seed) != 32:
            raise SigningError(f"key {key_id!r}: an Ed25519 seed is 32 bytes, got {len(seed)}")
        return cls(_check_id(key_id), Ed25519PrivateKey.from_private_bytes(seed))

    @classmethod
    def generate(cls, key_id: str) -> tuple[SigningKey, str]:
        """A new key and its ``<id>:<base64 seed>`` text (to keep secret)."""
        private = Ed25519PrivateKey.generate()
        seed = private.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        return cls(_check_id(key_id), private), f"{key_id}:{base64.b64encode(seed).decode()}"

    @property
    def public_b64(self) -> str:
        raw = self._private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        return base64.b64encode(raw).decode()

    def sign(self, body: bytes) -> str:
        """The signature header value for ``body``."""
        sig = base64.urlsafe_b64encode(self._private.sign(body)).rstrip(b"=").decode()
        return f"keyid={self.id},alg=ed25519,sig={sig}"


def verify(header: str | None, body: bytes, public_keys: dict[str, str]) -> str:
    """The id of the key that signed ``body`` (``public_keys``: id -> base64),
    or :class:`SigningError` saying why not. The same checks as the filter's."""
    if not header:
        raise SigningError("unsigned")
    fields: dict[str, str] = {}
    for part in header.split(","):
        name, sep, value = part.strip().partition("=")
        if not sep or name in fields or name not in ("keyid", "alg", "sig"):
            raise SigningError("malformed signature header")
        fields[name] = value
    if fields.get("alg") != "ed25519" or "keyid" not in fields or "sig" not in fields:
        raise SigningError("malformed signature header")
    public = public_keys.get(fields["keyid"])
    if public is None:
        raise SigningError(f"unknown key id {fields['keyid']!r}")
    sig = _b64decode(fields["sig"])
    try:
        Ed25519PublicKey.from_public_bytes(_b64decode(public)).verify(sig, body)
    except (InvalidSignature, ValueError) as exc:
        raise SigningError("signature does not match the body") from exc
    return fields["keyid"]
