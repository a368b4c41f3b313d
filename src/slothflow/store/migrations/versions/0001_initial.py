"""The first schema: tasks, values, evaluations, call graph, executions, jobs, tags, file digests.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

H = sa.String(64)


def upgrade() -> None:
    op.create_table(
        "task",
        sa.Column("hash", H, primary_key=True),
        sa.Column("fullname", sa.String(512), nullable=False),
        sa.Column("namespace", sa.String(512), nullable=False),
        sa.Column("name", sa.String(256), nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("code_manifest", sa.Text, nullable=True),
    )
    op.create_index("ix_task_fullname", "task", ["fullname"])
    op.create_table(
        "value",
        sa.Column("value_hash", H, primary_key=True),
        sa.Column("type_name", sa.String(512), nullable=False),
        sa.Column("storage", sa.String(16), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("preview", sa.String(200), nullable=False),
        sa.Column("data", sa.LargeBinary, nullable=True),
    )
    op.create_table(
        "evaluation",
        sa.Column("eval_hash", H, primary_key=True),
        sa.Column("task_hash", H, nullable=False),
        sa.Column("args_hash", H, nullable=False),
        sa.Column("value_hash", H, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_index("ix_evaluation_task_hash", "evaluation", ["task_hash"])
    op.create_table(
        "call_node",
        sa.Column("call_hash", H, primary_key=True),
        sa.Column("eval_hash", H, nullable=False),
        sa.Column("task_hash", H, nullable=False),
        sa.Column("args_hash", H, nullable=False),
        sa.Column("value_hash", H, nullable=False),
        sa.Column("subtree_tasks", sa.Text, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_index("ix_call_node_task_hash", "call_node", ["task_hash"])
    op.create_index("ix_call_node_eval_created", "call_node", ["eval_hash", "created_at"])
    op.create_table(
        "call_edge",
        sa.Column("parent_call", H, primary_key=True),
        sa.Column("position", sa.Integer, primary_key=True),
        sa.Column("child_call", H, nullable=False),
    )
    op.create_index("ix_call_edge_child_call", "call_edge", ["child_call"])
    op.create_table(
        "argument",
        sa.Column("call_hash", H, primary_key=True),
        sa.Column("name", sa.String(256), primary_key=True),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("value_hash", H, nullable=False),
        sa.Column("upstream_call", H, nullable=True),
    )
    op.create_index("ix_argument_value_hash", "argument", ["value_hash"])
    op.create_table(
        "execution",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("root_job", sa.String(32), nullable=True),
        sa.Column("args", sa.Text, nullable=False),
        sa.Column("user", sa.String(256), nullable=False),
        sa.Column("host", sa.String(256), nullable=False),
        sa.Column("cwd", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("started_at", sa.Float, nullable=False),
        sa.Column("ended_at", sa.Float, nullable=True),
    )
    op.create_index("ix_execution_started_at", "execution", ["started_at"])
    op.create_table(
        "job",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("execution_id", sa.String(32), nullable=False),
        sa.Column("parent_id", sa.String(32), nullable=True),
        sa.Column("task_hash", H, nullable=False),
        sa.Column("task_name", sa.String(512), nullable=False),
        sa.Column("eval_hash", H, nullable=False),
        sa.Column("call_hash", H, nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("executor", sa.String(64), nullable=True),
        sa.Column("started_at", sa.Float, nullable=False),
        sa.Column("ended_at", sa.Float, nullable=True),
        sa.Column("error_type", sa.String(512), nullable=True),
        sa.Column("error_message", sa.Text, nullable=True),
        sa.Column("error_traceback", sa.Text, nullable=True),
        sa.Column("arguments", sa.Text, nullable=True),
        sa.Column("environment", sa.Text, nullable=True),
        sa.Column("reason", sa.Text, nullable=True),
    )
    op.create_index("ix_job_execution_id", "job", ["execution_id"])
    op.create_index("ix_job_parent_id", "job", ["parent_id"])
    op.create_index("ix_job_eval_hash", "job", ["eval_hash"])
    op.create_index("ix_job_call_hash", "job", ["call_hash"])
    op.create_table(
        "tag",
        sa.Column("entity_type", sa.String(16), primary_key=True),
        sa.Column("entity_id", sa.String(64), primary_key=True),
        sa.Column("key", sa.String(256), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_index("ix_tag_key_value", "tag", ["key", "value"])
    op.create_table(
        "value_file",
        sa.Column("value_hash", H, primary_key=True),
        sa.Column("path", sa.Text, primary_key=True),
        sa.Column("file_hash", H, nullable=False),
    )
    op.create_index("ix_value_file_path", "value_file", ["path"])
    op.create_table(
        "file_digest",
        sa.Column("path", sa.Text, primary_key=True),
        sa.Column("directory", sa.Text, nullable=False),
        sa.Column("stat_token", sa.String(128), nullable=False),
        sa.Column("digest", sa.String(80), nullable=False),
        sa.Column("checked_at", sa.Float, nullable=False),
    )
    op.create_index("ix_file_digest_directory", "file_digest", ["directory"])
    op.create_table(
        "slothflow_meta",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
        sa.Column("is_set", sa.Boolean, nullable=False),
    )
    op.bulk_insert(
        sa.table("slothflow_meta", sa.column("key"), sa.column("value"), sa.column("is_set")),
        [{"key": "hash_algorithm", "value": "sha256", "is_set": True}],
    )


def downgrade() -> None:
    for name in ("slothflow_meta", "file_digest", "value_file", "tag", "job", "execution", "argument", "call_edge",
                 "call_node", "evaluation", "value", "task"):
        op.drop_table(name)
