"""The database schema (SQLAlchemy Core). Changes here need an Alembic migration in ``migrations/``.

Hashes are SHA-256 hex strings (the store's ``hash_algorithm``); times are UTC epoch seconds.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
)

HASH = String(64)
metadata = MetaData()

task = Table(
    "task",
    metadata,
    Column("hash", HASH, primary_key=True),
    Column("fullname", String(512), nullable=False, index=True),
    Column("namespace", String(512), nullable=False),
    Column("name", String(256), nullable=False),
    Column("source", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    # JSON list of the user code the task hash covers beyond its own source: [{name, file, line, hash, source}]
    Column("code_manifest", Text, nullable=True),
)

value = Table(
    "value",
    metadata,
    Column("value_hash", HASH, primary_key=True),
    Column("type_name", String(512), nullable=False),
    # "inline": data holds the serialized value; "blob": data is empty, the bytes are in the blob store.
    Column("storage", String(16), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("preview", String(200), nullable=False),
    Column("data", LargeBinary, nullable=True),
    # SHA-256 of the serialized bytes (and the blob's key): a value whose bytes no longer match is not used.
    # NULL for values written before schema 0002 (their blob is keyed by the value hash).
    Column("digest", String(64), nullable=True),
)

evaluation = Table(
    "evaluation",
    metadata,
    Column("eval_hash", HASH, primary_key=True),
    Column("task_hash", HASH, nullable=False, index=True),
    Column("args_hash", HASH, nullable=False),
    Column("value_hash", HASH, nullable=False),  # the reduction: what the body returned
    Column("updated_at", Float, nullable=False),
)

call_node = Table(
    "call_node",
    metadata,
    Column("call_hash", HASH, primary_key=True),
    Column("eval_hash", HASH, nullable=False),
    Column("task_hash", HASH, nullable=False, index=True),
    Column("args_hash", HASH, nullable=False),
    Column("value_hash", HASH, nullable=False),  # the final value
    Column("subtree_tasks", Text, nullable=False),  # space-separated task hashes below and including it
    Column("created_at", Float, nullable=False),
    Index("ix_call_node_eval_created", "eval_hash", "created_at"),
)

call_edge = Table(
    "call_edge",
    metadata,
    Column("parent_call", HASH, primary_key=True),
    Column("position", Integer, primary_key=True),
    Column("child_call", HASH, nullable=False, index=True),
)

argument = Table(
    "argument",
    metadata,
    Column("call_hash", HASH, primary_key=True),
    Column("name", String(256), primary_key=True),
    Column("position", Integer, nullable=False),
    Column("value_hash", HASH, nullable=False, index=True),
    Column("upstream_call", HASH, nullable=True),
)

execution = Table(
    "execution",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("root_job", String(32), nullable=True),
    Column("args", Text, nullable=False),
    Column("user", String(256), nullable=False),
    Column("host", String(256), nullable=False),
    Column("cwd", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("started_at", Float, nullable=False, index=True),
    Column("ended_at", Float, nullable=True),
    Column("pid", Integer, nullable=True),  # of the scheduler process on ``host``: a dead one means interrupted
    Column("heartbeat_at", Float, nullable=True),  # last flush of a running execution
)

job = Table(
    "job",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("execution_id", String(32), nullable=False, index=True),
    Column("parent_id", String(32), nullable=True, index=True),
    Column("task_hash", HASH, nullable=False),
    Column("task_name", String(512), nullable=False),
    Column("eval_hash", HASH, nullable=False, index=True),
    Column("call_hash", HASH, nullable=True, index=True),
    Column("status", String(16), nullable=False),  # running, ran, cached, failed
    Column("executor", String(64), nullable=True),
    Column("started_at", Float, nullable=False),
    Column("ended_at", Float, nullable=True),
    Column("error_type", String(512), nullable=True),
    Column("error_message", Text, nullable=True),
    Column("error_traceback", Text, nullable=True),
    Column("arguments", Text, nullable=True),  # JSON {name: value_hash}: known even when the job failed
    Column("environment", Text, nullable=True),  # JSON {python, packages: {name: version}} the task's code uses
    Column("reason", Text, nullable=True),  # why it ran instead of being reused, when the scheduler knows
)

tag = Table(
    "tag",
    metadata,
    Column("entity_type", String(16), primary_key=True),
    Column("entity_id", String(64), primary_key=True),
    Column("key", String(256), primary_key=True),
    Column("value", Text, nullable=False),  # JSON
    Column("created_at", Float, nullable=False),
    Index("ix_tag_key_value", "key", "value"),
)

# Files inside stored values (lineage: which call produced or consumed a file).
value_file = Table(
    "value_file",
    metadata,
    Column("value_hash", HASH, primary_key=True),
    Column("path", Text, primary_key=True),
    Column("file_hash", HASH, nullable=False),
    Index("ix_value_file_path", "path"),
)

# Remembered content digests of local files, keyed by their stat token (used by File hashing).
file_digest = Table(
    "file_digest",
    metadata,
    Column("path", Text, primary_key=True),
    Column("directory", Text, nullable=False, index=True),
    Column("stat_token", String(128), nullable=False),
    Column("digest", String(80), nullable=False),
    Column("checked_at", Float, nullable=False),
)

meta = Table(
    "slothflow_meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
    Column("is_set", Boolean, nullable=False, default=True),
)
