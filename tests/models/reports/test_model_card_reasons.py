"""The model card says which features are never reasons, and why some reasons are withheld."""

from __future__ import annotations

from features import contract
from models.reports.model_card import reason_notes
from tests.serving.world import World


def test_the_card_lists_the_stage_counts_as_never_reasons(world: World) -> None:
    notes = reason_notes(world.scorer)
    never = next(note for note in notes if note.startswith("**Features that are never reasons"))
    for stage in contract.SALES_STAGES:
        assert f"`sales_{stage}_count`" in never
    assert "`sales_recycled`" not in never  # a fact about the lead's history, still a reason
    assert any("its words agree with" in note for note in notes)
