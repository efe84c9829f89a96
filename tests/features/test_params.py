from pathlib import Path

import pytest

from features.errors import UserError
from features.params import Params, load_params, parse_params

REPO = Path(__file__).resolve().parents[2]


def test_repo_params_load_and_are_frozen() -> None:
    params = load_params(REPO / "params.yaml")
    assert params.quality_lead.target in params.targets
    with pytest.raises(ValueError, match="frozen"):
        params.generate.leads = 5  # type: ignore[misc]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"generate": {"leadz": 10}}, "unknown key 'generate.leadz'"),
        ({"qualty_lead": {}}, "unknown key 'qualty_lead'"),
        ({"generate": {"leads": "many"}}, "'generate.leads'"),
        ({"quality_lead": {"target": "nope"}}, "quality_lead.target 'nope'"),
        ({"targets": {"converted": {"stages": ["signed"]}}}, "unknown stages"),
        ({"grades": {"A": 0.1, "B": 0.2, "C": 0.05}}, "A > B > C"),
        ({"source": {"kind": "flat", "path": "x.csv"}}, "source.mapping is required"),
    ],
)
def test_bad_params_are_one_clear_line(raw: dict, message: str) -> None:
    with pytest.raises(UserError, match=message) as caught:
        parse_params(raw)
    assert "\n" not in str(caught.value)


def test_missing_and_invalid_files(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="file not found"):
        load_params(tmp_path / "absent.yaml")
    broken = tmp_path / "params.yaml"
    broken.write_text("generate: [unclosed\n")
    with pytest.raises(UserError, match="not valid YAML"):
        load_params(broken)


def test_defaults_are_the_design_definition() -> None:
    params = Params()
    assert params.quality_lead.window_days == 90
    assert params.targets["converted"].stages == ("won",)
    assert params.snapshots.offsets_days == (0, 7, 14, 30)
