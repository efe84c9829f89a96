"""The MLflow pyfunc bundle scores raw leads exactly as the pipeline's scorer does."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.exceptions import MlflowException
from mlflow.models import Model
from mlflow.models.utils import load_serving_example
from mlflow.pyfunc import PyFuncModel
from mlflow.pyfunc.scoring_server import infer_and_parse_data
from mlflow.types.schema import Array, Object
from threadpoolctl import threadpool_limits

from features import contract
from features.engine.table import build_feature_table
from features.params import Params
from models.packaging.bundle import (
    bundle_input,
    example_input,
    load_scorer,
    save_bundle,
    score_frame,
    write_bundle,
)
from models.scorer import LeadScorer
from models.training import train_all
from tests.serving.world import World


@pytest.fixture(scope="module")
def raw(world: World) -> Path:
    return world.raw


@pytest.fixture(scope="module")
def tables(world: World) -> dict[str, pd.DataFrame]:
    return world.tables


def fast(params: Params) -> Params:
    """The repository's params with quick training (these tests are not about accuracy)."""
    train = {"num_threads": 1, "learning_rate": 0.1, "max_rounds": 150, "early_stopping_rounds": 20}
    return params.model_copy(update={"train": params.train.model_copy(update=train)})


@pytest.fixture(scope="module")
def trained(world: World) -> tuple[LeadScorer, pd.DataFrame]:
    """The session's trained world (the bundle tests need no data of their own)."""
    return world.scorer, world.snapshots


@pytest.fixture(scope="module")
def scorer(trained: tuple[LeadScorer, pd.DataFrame]) -> LeadScorer:
    return trained[0]


@pytest.fixture(scope="module")
def bundle(
    tmp_path_factory: pytest.TempPathFactory,
    scorer: LeadScorer,
    tables: dict[str, pd.DataFrame],
) -> Path:
    path = tmp_path_factory.mktemp("bundle") / "model"
    save_bundle(scorer, path, example_input(tables, 3, scorer=scorer))
    return path


@pytest.fixture(scope="module")
def pyfunc(bundle: Path) -> PyFuncModel:
    return mlflow.pyfunc.load_model(str(bundle))


@pytest.fixture(scope="module")
def sample(trained: tuple[LeadScorer, pd.DataFrame]) -> pd.DataFrame:
    """Historical snapshots of every split, some leads at several ages."""
    snapshots = trained[1]
    picked = snapshots.sample(120, random_state=3)
    repeated = snapshots[snapshots["lead_id"].isin(picked["lead_id"].head(10))]
    return pd.concat([picked, repeated]).drop_duplicates(["lead_id", "as_of"])


def _predict(model: PyFuncModel, frame: pd.DataFrame, **kwargs: Any) -> pd.DataFrame:
    return pd.DataFrame(model.predict(frame, **kwargs))


def _example(path: Path) -> pd.DataFrame:
    return pd.DataFrame(Model.load(str(path)).load_input_example(str(path)))


def _requests(
    scorer: LeadScorer, tables: dict[str, pd.DataFrame], snapshots: pd.DataFrame
) -> pd.DataFrame:
    leads = tables["leads"].set_index("lead_id", drop=False).loc[snapshots["lead_id"]]
    return bundle_input(
        leads,
        tables["touches"],
        tables["sales_events"],
        as_of=snapshots["as_of"].tolist(),
        scorer=scorer,
    )


def test_pyfunc_scores_equal_the_pipeline_scores(
    pyfunc: PyFuncModel,
    scorer: LeadScorer,
    tables: dict[str, pd.DataFrame],
    sample: pd.DataFrame,
) -> None:
    """Each lead's raw history and the snapshot's as_of in; the batch features' scores out."""
    answer = _predict(pyfunc, _requests(scorer, tables, sample))
    expected = scorer.summarise(scorer.engine.matrix_from_frame(sample)).frame()
    assert answer["lead_id"].tolist() == sample["lead_id"].tolist()
    for target in scorer.models:
        np.testing.assert_allclose(answer[f"p_{target}"], expected[f"p_{target}"], rtol=0, atol=0)
    for column in ("score", "grade", "handoff", "segment"):
        assert answer[column].tolist() == expected[column].tolist()
    as_of = pd.to_datetime(answer["as_of"], utc=True, format="ISO8601")
    assert (as_of == sample["as_of"].reset_index(drop=True)).all()
    # when and how much, as every other answer carries them
    X = scorer.engine.matrix_from_frame(sample)
    timing = scorer.summarise(X).timing_columns(sample["as_of"].reset_index(drop=True))
    assert scorer.timing_ is not None
    for column in timing.columns:
        assert answer[column].tolist() == timing[column].tolist(), column


def test_reasons_are_the_scorers_top_three_each_way(
    pyfunc: PyFuncModel,
    scorer: LeadScorer,
    tables: dict[str, pd.DataFrame],
    sample: pd.DataFrame,
) -> None:
    rows = sample.head(20)
    answer = _predict(pyfunc, _requests(scorer, tables, rows))
    expected = scorer.explain(scorer.engine.matrix_from_frame(rows))
    for got_positive, got_negative, (positive, negative) in zip(
        answer["reasons_positive"], answer["reasons_negative"], expected, strict=True
    ):
        assert len(got_positive) <= 3
        assert len(got_negative) <= 3
        assert [r["text"] for r in got_positive] == [r.text for r in positive]
        assert [r["text"] for r in got_negative] == [r.text for r in negative]
        assert all(r["contribution"] > 0 for r in got_positive)
        assert all(r["contribution"] < 0 for r in got_negative)
        assert [r["contribution"] for r in got_positive] == sorted(
            (r["contribution"] for r in got_positive), reverse=True
        )


def test_json_records_score_like_the_frame(
    pyfunc: PyFuncModel,
    scorer: LeadScorer,
    tables: dict[str, pd.DataFrame],
    sample: pd.DataFrame,
) -> None:
    """What `/invocations` receives: dataframe_records through JSON, nulls and all, parsed
    as the scoring server parses them."""
    frame = _requests(scorer, tables, sample.head(15))
    records = json.loads(json.dumps(frame.to_dict("records")))
    assert any(value is None for record in records for value in record.values())
    parsed = infer_and_parse_data(
        {"dataframe_records": records}, pyfunc.metadata.get_input_schema()
    )
    answer = _predict(pyfunc, parsed)
    expected = _predict(pyfunc, frame)
    pd.testing.assert_frame_equal(answer, expected)


def test_pyfunc_answer_equals_the_api_answer(
    pyfunc: PyFuncModel, scorer: LeadScorer, tables: dict[str, pd.DataFrame]
) -> None:
    """The bundle (``mlflow models serve``'s path) and the API's one-lead path agree, reasons
    included."""
    from serving.model_input import ModelInput, answers

    lead = tables["leads"].iloc[50].to_dict()
    as_of = pd.Timestamp(lead["created_at"]) + pd.Timedelta(days=20)
    frame = bundle_input(
        pd.DataFrame([lead]), tables["touches"], tables["sales_events"], as_of, scorer=scorer
    )
    answer = _predict(pyfunc, frame).iloc[0]
    touches = list(frame.loc[0, "touches"])
    sales = list(frame.loc[0, "sales_events"])
    prepared = ModelInput(scorer).prepare(lead, touches, sales, as_of.to_pydatetime())
    api = answers(scorer, [prepared], {"name": "m", "version": "1"})[0]
    for key in ("lead_id", "p_accepted", "p_converted", "score", "grade", "handoff", "segment"):
        assert answer[key] == api[key], key
    for days, p in api["p_converted_by"].items():
        assert answer[f"p_converted_by_{days}d"] == p
    assert answer["expected_conversion_date"] == api["expected_conversion_date"]
    assert answer["expected_value"] == api["expected_value"]
    assert list(answer["reasons_positive"]) == api["reasons_positive"]
    assert list(answer["reasons_negative"]) == api["reasons_negative"]


def test_signature_follows_the_contract(bundle: Path, scorer: LeadScorer) -> None:
    signature = Model.load(str(bundle)).signature
    assert signature is not None
    inputs = {spec.name: spec for spec in signature.inputs.inputs}
    assert set(contract.LEADS.column_names) <= set(inputs)
    assert inputs["lead_id"].required
    assert inputs["created_at"].required
    assert not inputs["source"].required
    assert not inputs["as_of"].required
    for name, table in (("touches", contract.TOUCHES), ("sales_events", contract.SALES_EVENTS)):
        kind = inputs[name].type
        assert isinstance(kind, Array)
        assert isinstance(kind.dtype, Object)
        assert {p.name for p in kind.dtype.properties} == set(table.column_names)
    outputs = signature.outputs.input_names()
    assert {f"p_{t}" for t in scorer.models} <= set(outputs)
    assert {"score", "grade", "handoff", "reasons_positive", "reasons_negative"} <= set(outputs)
    assert {"segment", "expected_conversion_date", "expected_value"} <= set(outputs)


def test_input_example_is_real_leads_and_serves(
    bundle: Path, tables: dict[str, pd.DataFrame]
) -> None:
    """Saved with the bundle from real leads, events before as_of; the serving form parses."""
    example = _example(bundle)
    assert len(example) == 3
    assert set(example["lead_id"]) <= set(tables["leads"]["lead_id"])
    as_of = pd.Timestamp(example["as_of"].iloc[0])
    for events in (*example["touches"], *example["sales_events"]):
        assert all(pd.Timestamp(event["occurred_at"]) < as_of for event in events)
    model = mlflow.pyfunc.load_model(str(bundle))
    served = json.loads(load_serving_example(str(bundle)))
    parsed = infer_and_parse_data(served, model.metadata.get_input_schema())
    assert _predict(model, parsed)["lead_id"].tolist() == example["lead_id"].tolist()


def test_loads_in_a_fresh_process(bundle: Path, pyfunc: PyFuncModel) -> None:
    code = (
        "import sys, mlflow\n"
        "from mlflow.models import Model\n"
        "path = sys.argv[1]\n"
        "example = Model.load(path).load_input_example(path)\n"
        "answer = mlflow.pyfunc.load_model(path).predict(example)\n"
        "print(answer.to_json(orient='records', double_precision=15))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(bundle)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=bundle.parent,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    example = _example(bundle)
    expected = _predict(pyfunc, example).to_json(orient="records", double_precision=15)
    assert json.loads(result.stdout.strip().splitlines()[-1]) == json.loads(expected)


def test_load_scorer_unwraps_the_lead_scorer(bundle: Path, scorer: LeadScorer) -> None:
    loaded = load_scorer(str(bundle))
    assert isinstance(loaded, LeadScorer)
    assert loaded.definition == scorer.definition
    assert loaded.engine.feature_names_ == scorer.engine.feature_names_


def test_reasons_can_be_turned_off(
    pyfunc: PyFuncModel, scorer: LeadScorer, tables: dict[str, pd.DataFrame]
) -> None:
    frame = example_input(tables, 2, scorer=scorer)
    answer = _predict(pyfunc, frame, params={"with_reasons": False})
    assert answer["reasons_positive"].map(len).sum() == 0
    assert answer["score"].tolist() == _predict(pyfunc, frame)["score"].tolist()


def test_leads_without_events_or_as_of(pyfunc: PyFuncModel) -> None:
    frame = pd.DataFrame(
        [
            {"lead_id": "N1", "created_at": "2025-01-02T03:04:05Z", "seniority": "VP"},
            {"lead_id": "N2", "created_at": "2025-01-02", "seniority": None},
        ]
    )
    answer = _predict(pyfunc, frame)
    assert answer["lead_id"].tolist() == ["N1", "N2"]
    assert answer["score"].between(0, 100).all()
    assert pd.Timestamp(answer["as_of"].iloc[0]) > pd.Timestamp("2025-01-03", tz="UTC")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"created_at": "not a date"}, "row 0"),
        ({"touches": [{"touch_type": "web_visit"}]}, "occurred_at"),
    ],
)
def test_bad_rows_fail_with_a_clear_message(
    pyfunc: PyFuncModel, change: dict[str, object], message: str
) -> None:
    row = {"lead_id": "B1", "created_at": "2025-01-02", "touches": [], "sales_events": []}
    with pytest.raises(MlflowException, match=message):
        _predict(pyfunc, pd.DataFrame([{**row, **change}]))


def test_score_frame_is_the_bundles_predict(
    pyfunc: PyFuncModel, scorer: LeadScorer, tables: dict[str, pd.DataFrame]
) -> None:
    frame = example_input(tables, 3, scorer=scorer)
    now = pd.Timestamp("2030-01-01", tz="UTC")
    direct = score_frame(scorer, frame, now=now)
    pd.testing.assert_frame_equal(direct, _predict(pyfunc, frame))


def test_write_bundle_from_a_validated_directory(
    tmp_path: Path, raw: Path, scorer: LeadScorer
) -> None:
    """What the train stage calls: the bundle directory appears whole, example included."""
    target = tmp_path / "artifacts" / "model"
    write_bundle(scorer, raw, target)
    assert (target / "MLmodel").exists()
    assert [p.name for p in tmp_path.joinpath("artifacts").iterdir()] == ["model"]
    example = _example(target)
    assert len(example) == 3
    assert load_scorer(str(target)).definition == scorer.definition


def test_flat_import_bundle_takes_its_feature_columns(tmp_path: Path, repo_params: Params) -> None:
    """A model trained on a flat export: its extra columns in, no event lists."""
    rng = np.random.default_rng(0)
    n = 2000
    age = rng.uniform(18, 80, n)
    job = rng.choice(["admin", "technician", "manager"], n)
    leads = pd.DataFrame(
        {
            "lead_id": [f"F{i:05d}" for i in range(n)],
            "created_at": pd.Timestamp("2024-01-01", tz="UTC") + pd.to_timedelta(np.arange(n), "h"),
            "job": job,
            "age": age,
            "outcome_converted": (rng.uniform(size=n) < 0.1 + 0.3 * (job == "manager")).astype(
                float
            ),
        }
    )
    manifest = {"categorical": ["job"], "numeric": ["age"], "order": "time"}
    params = fast(repo_params).model_copy(
        update={"targets": {"converted": repo_params.targets["converted"]}}
    )
    engine, snapshots = build_feature_table({"leads": leads}, params, manifest)
    with threadpool_limits(1):
        scorer, _ = train_all(snapshots, engine, params, source="flat")
    save_bundle(scorer, tmp_path / "flat", example_input({"leads": leads}, 2, scorer=scorer))

    signature = Model.load(str(tmp_path / "flat")).signature
    assert signature is not None
    names = signature.inputs.input_names()
    assert {"job", "age"} <= set(names)
    assert not {"touches", "sales_events", "outcome_converted"} & set(names)
    records: list[dict[str, Any]] = [
        {"lead_id": "N1", "created_at": "2025-01-01T00:00:00Z", "job": "manager", "age": 40},
        {"lead_id": "N2", "created_at": "2025-01-01T00:00:00Z", "job": None, "age": None},
    ]
    model = mlflow.pyfunc.load_model(str(tmp_path / "flat"))
    parsed = infer_and_parse_data({"dataframe_records": records}, signature.inputs)
    answer = _predict(model, parsed)
    expected = scorer.summarise(
        np.vstack([engine.transform_one(dict(r), as_of="2025-01-02") for r in records])
    ).frame()
    assert answer["lead_id"].tolist() == ["N1", "N2"]
    frame = pd.DataFrame(records).assign(as_of="2025-01-02")
    np.testing.assert_array_equal(
        _predict(model, frame)["p_converted"].to_numpy(), expected["p_converted"].to_numpy()
    )
