"""Signed values: an HMAC-SHA256 over each stored value, so that only holders of the key can make one.

Whoever can write the store could otherwise plant a pickle that runs code in every process that reads it.
With a key configured (``[backend] signing_key_env``), each value is written as ``S`` + the 32-byte HMAC of
(value hash, bytes) + the bytes, and a value whose HMAC is missing or wrong is never loaded. The value hash
is part of what is signed, so a signed value cannot be replayed under another value's hash either.
Without a key, signed values are read as plain ones (the signature is not checked).
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Mapping

from slothflow._errors import ConfigError

SIGNED = b"S"
_MAC_SIZE = 32
_DOMAIN = b"slothflow-value-v1\0"
MIN_KEY_LENGTH = 16
NOT_SIGNED = "not signed"
MISMATCH = "signature mismatch"


def _mac(key: bytes, value_hash: str, payload: bytes) -> bytes:
    return hmac.new(key, _DOMAIN + value_hash.encode() + b"\0" + payload, hashlib.sha256).digest()


def sign(key: bytes, value_hash: str, payload: bytes) -> bytes:
    """The stored form of ``payload`` (a value's bytes), signed for ``value_hash``."""
    return SIGNED + _mac(key, value_hash, payload) + payload


def unwrap(key: bytes | None, value_hash: str, data: bytes) -> tuple[bytes | None, str | None]:
    """(the value's bytes, None), or (None, what is wrong) when a key is given and the signature is not right."""
    signed = data[:1] == SIGNED and len(data) > _MAC_SIZE
    if key is None:
        return (data[1 + _MAC_SIZE :] if signed else data), None
    if not signed:
        return None, NOT_SIGNED
    mac, payload = data[1 : 1 + _MAC_SIZE], data[1 + _MAC_SIZE :]
    if not hmac.compare_digest(mac, _mac(key, value_hash, payload)):
        return None, MISMATCH
    return payload, None


def signing_key(env_name: str | None, environ: Mapping[str, str] | None = None) -> bytes | None:
    """The key held by the environment variable ``env_name`` (None when no variable is named).

    Raises :class:`ConfigError` naming the variable when it is unset, or too short to be a secret.
    """
    if not env_name:
        return None
    value = (os.environ if environ is None else environ).get(env_name)
    if value is None:
        raise ConfigError(f"config backend.signing_key_env names the environment variable {env_name}, which is "
                          "not set: set it to the team's signing key (the same in every process that shares "
                          "the store)")
    if len(value.encode()) < MIN_KEY_LENGTH:
        raise ConfigError(f"the signing key in the environment variable {env_name} is shorter than "
                          f"{MIN_KEY_LENGTH} characters: use a long random one (python -c 'import secrets; "
                          "print(secrets.token_hex(32))')")
    return value.encode()
