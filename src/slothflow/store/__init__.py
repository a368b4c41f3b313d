"""The store: SQL schema, migrations, value blobs and provenance queries."""

from slothflow.store._store import HEAD_REVISION, Store, sqlite_path
from slothflow.store.blobs import BlobStore, LocalBlobStore

__all__ = ["HEAD_REVISION", "BlobStore", "LocalBlobStore", "Store", "sqlite_path"]
