"""From the ``[backend]`` configuration to a store's options: where blobs go and the signing key."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from slothflow._errors import ConfigError
from slothflow.store._signing import signing_key


def store_options(backend: Mapping[str, Any]) -> dict[str, Any]:
    """Keyword arguments of :class:`~slothflow.store.Store` for a ``[backend]`` section.

    ``blob_uri`` (any fsspec URL or folder) and its older spelling ``blob_dir`` name the same thing: giving
    both is a :class:`ConfigError`, as is a ``signing_key_env`` naming an unset variable.
    """
    uri, folder = backend.get("blob_uri"), backend.get("blob_dir")
    if uri and folder and uri != folder:
        raise ConfigError(f"config backend.blob_uri = {uri!r} and backend.blob_dir = {folder!r} both say where "
                          "large values go: keep blob_uri only")
    return {"blob_dir": uri or folder or None, "signing_key": signing_key(backend.get("signing_key_env"))}
