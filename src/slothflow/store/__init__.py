"""The store: SQL schema, migrations, value blobs and provenance queries."""

from slothflow.store._store import HEAD_REVISION, Store, sqlite_path

__all__ = ["HEAD_REVISION", "Store", "sqlite_path"]
