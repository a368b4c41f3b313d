"""The store: SQL schema, migrations, value blobs and provenance queries."""

from slothflow.store._store import HEAD_REVISION, Store, sqlite_path
from slothflow.store.blobs import BlobStore, FsspecBlobStore, LocalBlobStore

__all__ = ["HEAD_REVISION", "BlobStore", "FsspecBlobStore", "LocalBlobStore", "Store", "sqlite_path"]
