"""The scores and feedback tables.

Revision ID: 0001
Revises:
Create Date: 2026-12-02

Self-contained on purpose (no import of ``models.store.schema``): a revision must keep creating
what it created when it was written, whatever the schema module says later.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "scores",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("lead_id", sa.Text(), nullable=False),
        sa.Column("as_of", sa.DateTime(timezone=True), nullable=False),
        sa.Column("scored_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("model_name", sa.Text(), nullable=False),
        sa.Column("model_version", sa.Text(), nullable=False),
        sa.Column("probabilities", _JSON, nullable=False),
        sa.Column("probability", sa.Double(), nullable=False),
        sa.Column("score", sa.SmallInteger(), nullable=False),
        sa.Column("grade", sa.Text(), nullable=False),
        sa.Column("handoff", sa.Boolean(create_constraint=False), nullable=False),
        sa.Column("reasons", _JSON, nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_scores"),
        sa.CheckConstraint("score BETWEEN 0 AND 100", name="ck_scores_score_range"),
        sa.CheckConstraint("grade IN ('A', 'B', 'C', 'D')", name="ck_scores_grade"),
        sa.CheckConstraint(
            "source IN ('api', 'batch', 'queue', 'rescore')", name="ck_scores_source"
        ),
    )
    op.create_index("ix_scores_lead_id_scored_at", "scores", ["lead_id", "scored_at"])
    op.create_index("ix_scores_scored_at", "scores", ["scored_at"])
    op.create_table(
        "feedback",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("lead_id", sa.Text(), nullable=False),
        sa.Column("verdict", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("actor", sa.Text(), nullable=True),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_feedback"),
        sa.CheckConstraint(
            "verdict IN ('contacted', 'accepted', 'rejected')", name="ck_feedback_verdict"
        ),
        sa.CheckConstraint("length(note) <= 2000", name="ck_feedback_note_length"),
        sa.CheckConstraint("length(actor) <= 200", name="ck_feedback_actor_length"),
        sa.CheckConstraint("length(reason) <= 200", name="ck_feedback_reason_length"),
    )
    op.create_index("ix_feedback_lead_id", "feedback", ["lead_id"])


def downgrade() -> None:
    op.drop_table("feedback")
    op.drop_table("scores")
