"""The model bundle: the fitted :class:`LeadScorer` as an MLflow pyfunc model.

Raw leads in, scores out, so ``mlflow.pyfunc.load_model(…).predict(frame)`` and
``mlflow models serve -m … --env-manager local`` both score leads from their raw history.

Input: a DataFrame (or ``{"dataframe_records": [...]}`` over HTTP), one row per lead:

- the canonical lead fields of :data:`features.contract.LEADS` (``lead_id`` and ``created_at``
  required, the rest optional) plus, for a model trained on a flat import, its extra
  categorical and numeric columns (``engine.lead_categoricals_`` / ``engine.numerics_``);
- ``touches``: a list of objects ``{occurred_at, touch_type, campaign_id?}`` and
  ``sales_events``: a list of objects ``{occurred_at, stage, owner_id?, reason?, amount?}``
  (the canonical event columns; an optional ``lead_id`` is accepted and ignored). Both are
  declared in the signature as ``Array(Object)``; a lead without events sends ``[]`` (a row may
  not leave the column out while other rows of the same request carry it). A model whose data
  had no touches (or no sales events) has no such column;
- ``as_of`` (optional): when to score; default now. Features use only events before it.

Timestamps travel as ISO-8601 strings (JSON has no time type; naive means UTC), in the lead
fields and inside the event objects alike. :func:`bundle_input` builds such a frame from
canonical tables.

Output: one row per lead: ``lead_id``, ``as_of`` (ISO), ``p_<target>`` per target, ``score``
(0–100), ``grade``, ``handoff``, ``fit_score`` / ``engagement_score`` (0–100, null when the
model has no feature on that axis), ``grid``, ``segment`` (the model used: a segment's or
``pooled``), ``p_converted_by_<d>d`` per timing horizon, ``expected_conversion_date`` and
``expected_value`` (null without a timing model), and ``reasons_positive`` /
``reasons_negative`` (up to three objects ``{field, text, contribution}``, contribution in
log-odds of the primary target, signed).
The parameter ``with_reasons`` (default true) turns the reasons off for speed.

**A model that travels.** The scorer is a pickle of leadscore's classes, so the bundle carries
the code that unpickles and runs it: ``code/`` holds exactly the modules of ``features/`` and
``models/`` that the bundle's model code imports (module level or inside functions, transitively)
and that the pickle refers to (:func:`code_files`), nothing else of the project; MLflow puts
``code/`` on ``sys.path`` when it loads the model. ``requirements.txt`` pins, to the training
environment's versions, the distributions that code and the pickle import (:data:`REQUIREMENTS`;
saving fails if the carried code imports a package it does not list). So ``mlflow models serve
-m … --env-manager virtualenv`` (or ``uv``) builds a fresh environment from ``python_env.yaml`` and
serves the model without leadscore installed; ``--env-manager local`` serves it from the
project's environment, where the installed leadscore is the code.

Code is preferred to a leadscore wheel listed in the requirements: the wheel would bring every
dependency of the whole project (DVC, Great Expectations, FastAPI, PostgreSQL drivers…) into the
serving environment, and the pickle needs the same module names either way.
"""

from __future__ import annotations

import ast
import json
import logging
import pickle
import pickletools
import re
import shutil
import sys
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import mlflow
import mlflow.pyfunc
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import Model, ModelSignature
from mlflow.pyfunc import PyFuncModel, PythonModel, PythonModelContext
from mlflow.types.schema import (
    Array,
    ColSpec,
    DataType,
    Object,
    ParamSchema,
    ParamSpec,
    Property,
    TensorSpec,
)
from mlflow.types.schema import Schema as MlflowSchema

from features import contract
from features.engine.timelines import timestamp_ms, timestamps_ms
from features.storage import atomic_directory, read_validated
from models.packaging.cache import SCORER_SHA256 as SCORER_SHA256
from models.packaging.cache import scorer_file as scorer_file
from models.packaging.cache import sha256_of as sha256_of
from models.packaging.tracking import local_model_path
from models.reasons import reason_records
from models.scorer import LeadScorer

logger = logging.getLogger(__name__)

SCORER_ARTIFACT = "scorer"
EVENT_COLUMNS = {"touches": contract.TOUCHES, "sales_events": contract.SALES_EVENTS}
"""Input column → the canonical table its objects follow."""
AS_OF = "as_of"
REASONS = 3
"""Reasons of each sign per answer (as the API's default)."""
REQUIREMENTS = (
    "mlflow",
    "lightgbm",
    "numpy",
    "pandas",
    "pyarrow",
    "scikit-learn",
    "scipy",
)
"""The distributions the loaded model imports, pinned on save to the training environment's
versions: those of the carried code and of the pickle's classes (:func:`check_requirements`
fails a save whose code imports anything else), and SciPy, which LightGBM and scikit-learn import
when they load (scikit-learn's compiled code calls SciPy's BLAS), so that the serving
environment has the training one's build. Not pydantic nor PyYAML: only ``features.params``
imports them, and the bundle does not carry it (MLflow brings its own)."""
CODE_PACKAGES = ("features", "models")
"""The project's packages whose modules the bundle may carry (``code/<package>/…``)."""
CODE_ENTRY = "models.packaging.bundle"
"""The module the model code imports (:data:`MODEL_CODE_TEXT`): the root of the carried code."""
CODE_DIR = "code"
MODEL_CODE = "leadscore_bundle.py"
MODEL_CODE_TEXT = (
    '"""leadscore model bundle (MLflow models-from-code): the class lives in leadscore\'s '
    "models.packaging.bundle, the copy in this model's code/ directory where leadscore is not "
    'installed."""\n\n'
    "import sys\n\n"
    "import mlflow\n\n"
    "# no __pycache__ written into the model directory (read-only, or a DVC output)\n"
    "_WRITE_BYTECODE, sys.dont_write_bytecode = sys.dont_write_bytecode, True\n"
    "try:\n"
    "    from models.packaging.bundle import LeadBundle\n"
    "finally:\n"
    "    sys.dont_write_bytecode = _WRITE_BYTECODE\n\n"
    "mlflow.models.set_model(LeadBundle())\n"
)
"""The bundle's model code (MLflow "models from code"): no pickled Python object, just a
reference to the class (from ``code/``, or the installed package where it is imported already);
the fitted scorer is the ``scorer`` artifact. Importing the carried code writes no bytecode
beside it: a model served from ``artifacts/model`` (DVC's output) or from a read-only mount is
left as it was."""


# ------------------------------------------------------------------ schema
def _scalar_type(kind: contract.Kind) -> DataType:
    return DataType.double if kind is contract.Kind.FLOAT else DataType.string


def lead_columns(scorer: LeadScorer) -> list[tuple[str, DataType, bool]]:
    """(name, type, required) of the lead fields the bundle takes."""
    columns = [(c.name, _scalar_type(c.kind), not c.nullable) for c in contract.LEADS]
    known = {name for name, _, _ in columns}
    engine = scorer.engine
    for name in engine.lead_categoricals_:
        if name not in known:
            columns.append((name, DataType.string, False))
            known.add(name)
    for name in engine.numerics_:
        if name not in known:
            columns.append((name, DataType.double, False))
            known.add(name)
    return columns


def event_columns(scorer: LeadScorer) -> list[str]:
    """The event-list columns this scorer uses (only the tables it was fitted with)."""
    engine = scorer.engine
    present = {"touches": engine.has_touches_, "sales_events": engine.has_sales_}
    return [name for name in EVENT_COLUMNS if present[name]]


def _event_object(table: contract.Table) -> Object:
    return Object(
        [
            Property(
                c.name,
                _scalar_type(c.kind),
                required=not c.nullable and c.name != "lead_id",
            )
            for c in table
        ]
    )


_REASON = Object(
    [
        Property("field", DataType.string),
        Property("text", DataType.string),
        Property("contribution", DataType.double),
    ]
)


def signature(scorer: LeadScorer) -> ModelSignature:
    inputs: list[ColSpec | TensorSpec] = [
        ColSpec(kind, name, required=required) for name, kind, required in lead_columns(scorer)
    ]
    inputs += [
        ColSpec(Array(_event_object(EVENT_COLUMNS[name])), name, required=False)
        for name in event_columns(scorer)
    ]
    inputs.append(ColSpec(DataType.string, AS_OF, required=False))
    outputs: list[ColSpec | TensorSpec] = [
        ColSpec(DataType.string, "lead_id"),
        ColSpec(DataType.string, AS_OF),
        *(ColSpec(DataType.double, f"p_{target}") for target in scorer.models),
        ColSpec(DataType.long, "score"),
        ColSpec(DataType.string, "grade"),
        ColSpec(DataType.boolean, "handoff"),
        ColSpec(DataType.long, "fit_score", required=False),
        ColSpec(DataType.long, "engagement_score", required=False),
        ColSpec(DataType.string, "grid", required=False),
        ColSpec(DataType.string, "segment"),
        *(
            ColSpec(DataType.double, f"p_converted_by_{days}d", required=False)
            for days in _horizons(scorer)
        ),
        ColSpec(DataType.string, "expected_conversion_date", required=False),
        ColSpec(DataType.double, "expected_value", required=False),
        ColSpec(Array(_REASON), "reasons_positive"),
        ColSpec(Array(_REASON), "reasons_negative"),
    ]
    return ModelSignature(
        inputs=MlflowSchema(inputs),
        outputs=MlflowSchema(outputs),
        params=ParamSchema([ParamSpec("with_reasons", DataType.boolean, True)]),
    )


def _horizons(scorer: LeadScorer) -> tuple[int, ...]:
    timing = getattr(scorer, "timing_", None)  # scorers pickled before timing: none
    return () if timing is None else tuple(timing.horizons_days)


# ----------------------------------------------------------------- scoring
class BundleInputError(ValueError):
    """A row the bundle cannot score (e.g. a timestamp that does not parse)."""


class BundleError(RuntimeError):
    """A bundle that cannot score its own input example (e.g. made by other code)."""


def _missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, (list, tuple, dict, np.ndarray)):
        return False
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _plain(value: Any) -> Any:
    """pandas/numpy scalars → plain Python; every missing marker → None."""
    if _missing(value):
        return None
    return value.item() if isinstance(value, np.generic) else value


def _events(value: Any) -> list[dict[str, Any]]:
    if _missing(value):
        return []
    if isinstance(value, str):  # tolerate a JSON string of the list
        value = json.loads(value)
    return [{k: _plain(v) for k, v in dict(event).items()} for event in value]


def score_frame(
    scorer: LeadScorer,
    frame: pd.DataFrame,
    with_reasons: bool = True,
    now: pd.Timestamp | None = None,
) -> pd.DataFrame:
    """Score the bundle's input frame (see the module docstring) with ``scorer``."""
    lead_names = [name for name, _, _ in lead_columns(scorer) if name in frame]
    events = [name for name in EVENT_COLUMNS if name in frame]
    default_as_of = contract.utc(now) if now is not None else pd.Timestamp.now(tz="UTC")
    engine = scorer.engine
    width = len(engine.feature_names_)
    rows = np.empty((len(frame), width), dtype=np.float64)
    stamps = []
    records = frame.to_dict("records")
    for i, record in enumerate(records):
        try:
            lead = {name: _plain(record.get(name)) for name in lead_names}
            history = {name: _events(record.get(name)) for name in events}
            raw_as_of = _plain(record.get(AS_OF))
            as_of = default_as_of if raw_as_of is None else contract.utc(raw_as_of)
            rows[i] = engine.transform_one(
                lead, history.get("touches", []), history.get("sales_events", []), as_of
            )
        except (ValueError, TypeError, KeyError, OverflowError) as error:
            raise BundleInputError(
                f"row {i} (lead_id {record.get('lead_id')!r}): {type(error).__name__}: {error}"
            ) from error
        stamps.append(as_of)
    summary, reasons = scorer.summarise_explained(
        rows, count=REASONS if with_reasons else 0, num_threads=1
    )
    timing = summary.timing_columns(pd.Series(stamps, dtype=object))
    scored = pd.concat([summary.frame(), timing], axis=1)
    scored.insert(0, "lead_id", [str(_plain(r.get("lead_id"))) for r in records])
    scored.insert(1, AS_OF, [stamp.isoformat() for stamp in stamps])
    scored["reasons_positive"] = [reason_records(p) for p, _ in reasons]
    scored["reasons_negative"] = [reason_records(n) for _, n in reasons]
    return scored


class LeadBundle(PythonModel):
    """The pyfunc wrapper; its scorer is loaded from the ``scorer`` artifact."""

    scorer: LeadScorer

    def load_context(self, context: PythonModelContext) -> None:
        with Path(context.artifacts[SCORER_ARTIFACT]).open("rb") as handle:
            self.scorer = pickle.load(handle)

    def predict(
        self,
        context: PythonModelContext | None,
        model_input: pd.DataFrame,
        params: dict[str, Any] | None = None,
    ) -> pd.DataFrame:
        with_reasons = bool((params or {}).get("with_reasons", True))
        try:
            return score_frame(self.scorer, pd.DataFrame(model_input), with_reasons=with_reasons)
        except BundleInputError as error:  # a 400 with this message, not a stack trace
            raise MlflowException.invalid_parameter_value(str(error)) from error


# ------------------------------------------------------------------- input
def _iso(value: Any) -> str | None:
    return None if _missing(value) else contract.utc(value).isoformat()


def _event_records(frame: pd.DataFrame, table: contract.Table) -> list[dict[str, Any]]:
    """Events as the bundle's objects (optional properties left out rather than null)."""
    names = [c.name for c in table if c.name != "lead_id" and c.name in frame]
    values: dict[str, list[Any]] = {}
    for name in names:
        kind = table.column(name).kind
        column = frame[name]
        if kind is contract.Kind.TIMESTAMP:
            values[name] = [_iso(v) for v in pd.to_datetime(column, utc=True)]
        elif kind is contract.Kind.FLOAT:
            values[name] = [None if _missing(v) else float(v) for v in column]
        else:
            values[name] = [None if _missing(v) else str(v) for v in column]
    return [
        {name: values[name][i] for name in names if values[name][i] is not None}
        for i in range(len(frame))
    ]


def _event_lists(
    table: pd.DataFrame | None,
    spec: contract.Table,
    lead_ids: pd.Series,
    stamps: Sequence[pd.Timestamp | None],
) -> list[list[dict[str, Any]]]:
    """Per lead row, its events in time order (before its stamp when there is one)."""
    if table is None or not len(table):
        return [[] for _ in range(len(lead_ids))]
    mine = table[table["lead_id"].isin(set(lead_ids))]
    mine = mine.assign(_ms=timestamps_ms(mine["occurred_at"]))
    mine = mine.sort_values(["lead_id", "_ms"], kind="stable")
    records = _event_records(mine, spec)
    keys = mine["lead_id"].astype(str).to_numpy()
    ms = mine["_ms"].to_numpy()
    out = []
    for lead_id, stamp in zip(lead_ids.astype(str), stamps, strict=True):
        start, end = np.searchsorted(keys, lead_id, "left"), np.searchsorted(keys, lead_id, "right")
        if stamp is not None:
            end = start + int(np.searchsorted(ms[start:end], timestamp_ms(stamp), "left"))
        out.append(records[start:end])
    return out


def _lead_values(name: str, values: pd.Series, double: bool) -> list[Any]:
    canonical = name in contract.LEADS.column_names
    if canonical and contract.LEADS.column(name).kind is contract.Kind.TIMESTAMP:
        return [_iso(v) for v in values]
    if double:
        return [None if _missing(v) else float(v) for v in values]
    return [None if _missing(v) else str(v) for v in values]


def bundle_input(
    leads: pd.DataFrame,
    touches: pd.DataFrame | None = None,
    sales_events: pd.DataFrame | None = None,
    as_of: Any = None,
    scorer: LeadScorer | None = None,
) -> pd.DataFrame:
    """The bundle's input frame (wire format: ISO timestamps, event lists) for canonical
    ``leads`` with their events, kept strictly before each lead's ``as_of`` when given (the
    features ignore later ones anyway; this keeps requests small).

    ``as_of`` is one timestamp for all leads, a sequence aligned with ``leads``, or None (no
    column: the bundle scores as of now). With ``scorer``, exactly its input columns are built
    (an absent event table gives empty lists); without, every column of ``leads`` and the event
    tables given.
    """
    leads = leads.reset_index(drop=True)
    stamps: list[pd.Timestamp | None]
    if as_of is None:
        stamps = [None] * len(leads)
    elif isinstance(as_of, (pd.Series, pd.Index, np.ndarray, list, tuple)):
        stamps = [contract.utc(v) for v in as_of]
    else:
        stamps = [contract.utc(as_of)] * len(leads)
    sources = {"touches": touches, "sales_events": sales_events}
    if scorer is not None:
        doubles = {name for name, kind, _ in lead_columns(scorer) if kind is DataType.double}
        names = [name for name, _, _ in lead_columns(scorer) if name in leads]
        lists = event_columns(scorer)
    else:
        doubles = {
            name
            for name in leads.columns
            if name not in contract.LEADS.column_names
            and pd.api.types.is_numeric_dtype(leads[name])
        }
        doubles |= {c.name for c in contract.LEADS if c.kind is contract.Kind.FLOAT}
        names = list(leads.columns)
        lists = [name for name, table in sources.items() if table is not None]
    columns: dict[str, list[Any]] = {
        name: _lead_values(name, leads[name], name in doubles) for name in names
    }
    for name in lists:
        columns[name] = _event_lists(sources[name], EVENT_COLUMNS[name], leads["lead_id"], stamps)
    if as_of is not None:
        columns[AS_OF] = [None if s is None else s.isoformat() for s in stamps]
    # object columns keep None (JSON null) where pandas would make strings NaN
    return pd.DataFrame(
        {
            name: pd.Series(values, dtype=np.float64 if name in doubles else object)
            for name, values in columns.items()
        }
    )


def example_lead_ids(
    leads: pd.DataFrame,
    n: int = 3,
    touches: pd.DataFrame | None = None,
    sales_events: pd.DataFrame | None = None,
) -> list[str]:
    """``n`` real leads for the input example: the latest captured at least a week before the
    last capture (so they have some history), still open (no won, lost or rejected event),
    touched at least once when touches are given, from different sources when possible."""
    created = pd.to_datetime(leads["created_at"], utc=True)
    ids = leads["lead_id"]
    preferences = [created <= created.max() - pd.Timedelta(days=7)]
    if sales_events is not None:
        closed = sales_events.loc[sales_events["stage"].isin(contract.CLOSED_STAGES), "lead_id"]
        preferences.append(~ids.isin(closed.unique()))
    if touches is not None:
        preferences.append(ids.isin(touches["lead_id"].unique()))
    pool = leads.assign(_created=created)
    for keep in preferences:  # each preference only while enough leads satisfy it
        narrower = pool[keep.loc[pool.index]]
        if len(narrower) >= n:
            pool = narrower
    pool = pool.sort_values("_created", ascending=False, kind="stable")
    if "source" in pool and pool["source"].nunique() >= n:
        pool = pool.drop_duplicates("source")
    return [str(v) for v in pool["lead_id"].head(n)]


def example_input(
    validated_tables: Mapping[str, pd.DataFrame], n: int = 3, scorer: LeadScorer | None = None
) -> pd.DataFrame:
    """The input example: ``n`` real leads of the validated tables with their history, scored
    as of the dataset's last capture time (with ``scorer``: exactly its input columns)."""
    leads = validated_tables["leads"]
    ids = example_lead_ids(
        leads, n, validated_tables.get("touches"), validated_tables.get("sales_events")
    )
    chosen = leads[leads["lead_id"].isin(ids)].set_index("lead_id", drop=False).loc[ids]
    events = {
        name: validated_tables[name][validated_tables[name]["lead_id"].isin(ids)]
        for name in EVENT_COLUMNS
        if name in validated_tables
    }
    return bundle_input(
        chosen.reset_index(drop=True),
        events.get("touches"),
        events.get("sales_events"),
        as_of=pd.to_datetime(leads["created_at"], utc=True).max(),
        scorer=scorer,
    )


# ------------------------------------------------------------ carried code
def source_root() -> Path:
    """The directory holding the imported ``features`` and ``models`` packages: the checkout
    (editable install), ``site-packages`` (a wheel), or a bundle's ``code/`` (a serving
    environment without leadscore)."""
    return Path(__file__).resolve().parents[2]


def _module_file(root: Path, module: str) -> Path | None:
    """The source file of project module ``module`` under ``root`` (None: not a project
    module, or a name inside one, such as ``models.scorer.LeadScorer``)."""
    parts = module.split(".")
    if parts[0] not in CODE_PACKAGES:
        return None
    base = root.joinpath(*parts)
    for candidate in (base / "__init__.py", base.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def _imports(path: Path, module: str) -> set[str]:
    """Every module name ``path`` (the module ``module``) imports, at module level or inside
    functions (a lazy import is needed as soon as its function runs): for ``from a import b``
    both ``a`` and ``a.b``, since ``b`` may be a submodule or a name in ``a``."""
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package of this module
                anchor = package[: len(package) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            if base:
                names.add(base)
            names.update(f"{base}.{alias.name}" if base else alias.name for alias in node.names)
    return names


def pickled_modules(path: Path) -> set[str]:
    """The modules of the classes and functions a pickle refers to, read from its opcodes:
    nothing is unpickled. ``GLOBAL`` names its module; ``STACK_GLOBAL`` takes the two strings
    pushed before it (each pushed as such or fetched from the memo)."""
    memo: dict[int, Any] = {}
    pushed: list[Any] = [None, None]  # the two latest values pushed (non-strings as None)
    modules: set[str] = set()
    with Path(path).open("rb") as handle:
        for opcode, arg, _ in pickletools.genops(handle):
            name = opcode.name
            if name in ("PROTO", "FRAME", "STOP"):
                continue
            if name == "MEMOIZE":
                memo[len(memo)] = pushed[-1]
                continue
            index = arg if isinstance(arg, int) else -1  # PUT/GET's memo key
            if name in ("PUT", "BINPUT", "LONG_BINPUT"):
                memo[index] = pushed[-1]
                continue
            value: Any = None
            if name in ("GLOBAL", "INST"):
                modules.add(str(arg).split(" ", 1)[0])
            elif name == "STACK_GLOBAL" and isinstance(pushed[-2], str):
                modules.add(pushed[-2])
            elif name in ("SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE"):
                value = arg
            elif name in ("GET", "BINGET", "LONG_BINGET"):
                value = memo.get(index)
            pushed = [pushed[-1], value]
    return modules


def _top(module: str) -> str:
    return module.split(".", 1)[0]


def _third_party(module: str) -> bool:
    top = _top(module)
    return top not in CODE_PACKAGES and top not in sys.stdlib_module_names and top != "__future__"


@dataclass(frozen=True)
class CarriedCode:
    """What a bundle carries: project source files (relative to :func:`source_root`) and the
    top-level names of the third-party modules they and the pickle import."""

    files: tuple[Path, ...]
    third_party: frozenset[str]


def code_files(scorer_pickle: Path, root: Path | None = None) -> CarriedCode:
    """The project modules a bundle needs: :data:`CODE_ENTRY` and the modules of the pickle's
    classes, their imports transitively (see :func:`_imports`), and each one's parent packages'
    ``__init__.py``; no other module of the project (no tests, no data, no stage modules)."""
    root = source_root() if root is None else Path(root)
    referenced = pickled_modules(scorer_pickle)
    third_party = {_top(m) for m in referenced if _third_party(m)}
    pending = [CODE_ENTRY, *sorted(m for m in referenced if _top(m) in CODE_PACKAGES)]
    found: dict[str, Path] = {}
    while pending:
        module = pending.pop()
        if module in found:
            continue
        path = _module_file(root, module)
        if path is None:
            if _third_party(module):
                third_party.add(_top(module))
            continue
        found[module] = path
        parts = module.split(".")
        pending.extend(".".join(parts[:i]) for i in range(1, len(parts)))
        pending.extend(_imports(path, module))
    return CarriedCode(
        files=tuple(sorted(path.relative_to(root) for path in found.values())),
        third_party=frozenset(third_party),
    )


def _normal(distribution: str) -> str:
    return re.sub(r"[-_.]+", "-", distribution).lower()


def check_requirements(modules: Iterable[str]) -> None:
    """:class:`BundleError` unless each third-party module is provided by a distribution of
    :data:`REQUIREMENTS`: a bundle whose code imports a package its environment would not
    install must not leave the train stage."""
    providers = metadata.packages_distributions()
    listed = {_normal(name) for name in REQUIREMENTS}
    missing = []
    for module in sorted(modules):
        names = {_normal(name) for name in providers.get(module, ())}
        if not names & listed:
            missing.append(f"{module} (from {', '.join(sorted(names)) or 'no distribution'})")
    if missing:
        raise BundleError(
            "the bundle's code imports modules its requirements do not install: "
            + "; ".join(missing)
            + " (add the distribution to models.packaging.bundle.REQUIREMENTS)"
        )


def carry_code(scorer_pickle: Path, scratch: Path) -> list[str]:
    """Copy the modules the bundle needs (:func:`code_files`) under ``scratch/code`` and return
    the package directories to pass to MLflow as ``code_paths`` (MLflow copies each into the
    model's ``code/``)."""
    root = source_root()
    carried = code_files(scorer_pickle, root)
    check_requirements(carried.third_party)
    stage = Path(scratch) / CODE_DIR
    for relative in carried.files:
        target = stage / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(root / relative, target)
    return [str(stage / package) for package in CODE_PACKAGES if (stage / package).is_dir()]


def _saved_code(model_dir: Path, scratch: Path) -> list[str] | None:
    """The code of a saved bundle, copied clean (no ``__pycache__``) for logging it again; None
    for a bundle saved before bundles carried their code."""
    carried = Path(model_dir) / CODE_DIR
    if not carried.is_dir():
        logger.warning("%s: no code/; it loads only where leadscore is installed", model_dir)
        return None
    paths = []
    for package in sorted(p for p in carried.iterdir() if p.is_dir()):
        target = Path(scratch) / CODE_DIR / package.name
        shutil.copytree(package, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        paths.append(str(target))
    return paths


# ------------------------------------------------------------- save / load
def requirements() -> list[str]:
    pins = []
    for name in REQUIREMENTS:
        try:
            pins.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            pins.append(name)
    return pins


def _bundle_metadata(scorer: LeadScorer) -> dict[str, Any]:
    try:
        version = metadata.version("leadscore")
    except metadata.PackageNotFoundError:
        version = "unknown"
    return {
        "leadscore_version": version,
        "primary_target": scorer.definition.target,
        "targets": list(scorer.models),
        "definition": scorer.definition.text,
    }


def _save(
    scorer: LeadScorer,
    input_example: pd.DataFrame,
    write: Any,
) -> None:
    """Pickle the scorer into a temporary file and hand the pyfunc arguments to ``write``."""
    with tempfile.TemporaryDirectory(prefix="leadscore-bundle-") as scratch:
        pickled = Path(scratch) / "scorer.pkl"
        with pickled.open("wb") as handle:
            pickle.dump(scorer, handle, protocol=pickle.HIGHEST_PROTOCOL)
        code = Path(scratch) / MODEL_CODE
        code.write_text(MODEL_CODE_TEXT)
        write(
            python_model=str(code),
            artifacts={SCORER_ARTIFACT: str(pickled)},
            code_paths=carry_code(pickled, Path(scratch)),
            signature=signature(scorer),
            input_example=input_example,
            pip_requirements=requirements(),
            metadata=_bundle_metadata(scorer),
        )


def save_bundle(scorer: LeadScorer, path: Path, input_example: pd.DataFrame) -> None:
    """Write the MLflow model directory ``path`` (absent or empty), then check that it loads
    and scores its own input example, so a bundle that cannot serve never leaves the stage."""
    path = Path(path)

    def write(**kwargs: Any) -> None:
        mlflow.pyfunc.save_model(path=str(path), **kwargs)

    _save(scorer, input_example, write)
    verify_bundle(path)


def verify_bundle(path: Path) -> LeadScorer:
    """Load the bundle directory (once) and score its input example through pyfunc; returns
    the scorer it holds, :class:`BundleError` if it cannot serve."""
    try:
        model = _load_pyfunc(str(path))
        example = pd.DataFrame(Model.load(str(path)).load_input_example(str(path)))
        answer = pd.DataFrame(model.predict(example))
        python_model = model.unwrap_python_model()
    except Exception as error:
        raise BundleError(
            f"{path}: the model bundle cannot score its own input example "
            f"({type(error).__name__}: {error})"
        ) from error
    if len(answer) != len(example):
        raise BundleError(f"{path}: the bundle scored {len(answer)} of {len(example)} rows")
    if not isinstance(python_model, LeadBundle):
        raise BundleError(f"{path}: not a leadscore bundle")
    return python_model.scorer


def log_bundle(model_dir: Path, name: str = "model") -> Any:
    """Log a saved (and verified) bundle directory as the active run's model: a new MLflow
    logged model with the same pickled scorer file, signature, input example, requirements and
    metadata, none of it unpickled or rebuilt. Returns the ModelInfo."""
    model_dir = Path(model_dir)
    saved = Model.load(str(model_dir))
    pickled = scorer_file(model_dir)
    if not pickled.is_file():
        raise BundleError(f"{pickled}: missing; not a leadscore bundle")
    with tempfile.TemporaryDirectory(prefix="leadscore-bundle-") as scratch:
        code = Path(scratch) / MODEL_CODE
        code.write_text(MODEL_CODE_TEXT)
        return mlflow.pyfunc.log_model(
            name=name,
            python_model=str(code),
            artifacts={SCORER_ARTIFACT: str(pickled)},
            code_paths=_saved_code(model_dir, Path(scratch)),
            signature=saved.signature,
            input_example=pd.DataFrame(saved.load_input_example(str(model_dir))),
            pip_requirements=str(model_dir / "requirements.txt"),
            metadata=saved.metadata,
        )


def read_example_tables(validated: Path, candidates: int = 500) -> dict[str, pd.DataFrame]:
    """From the validated tables directory: the latest ``candidates`` leads captured at least a
    week before the last capture, and only their events (a filtered read, whatever the size)."""
    leads = read_validated(validated, ["leads"])["leads"]
    created = pd.to_datetime(leads["created_at"], utc=True)
    older = created[created <= created.max() - pd.Timedelta(days=7)]
    pool = (older if len(older) else created).sort_values(ascending=False)
    ids = leads.loc[pool.index[:candidates], "lead_id"].astype(str).tolist()
    return {"leads": leads[leads["lead_id"].isin(ids)]} | read_validated(
        validated, EVENT_COLUMNS, ids
    )


def write_bundle(scorer: LeadScorer, validated: Path, path: Path, examples: int = 3) -> None:
    """The train stage's bundle: ``path`` written atomically, its input example made of
    ``examples`` real leads of the validated tables directory."""
    example = example_input(read_example_tables(validated), examples, scorer=scorer)
    with atomic_directory(path) as staging:
        save_bundle(scorer, staging, example)
    logger.info("model bundle → %s", path)


def load_bundle(uri_or_path: str, tracking_uri: str | None = None) -> PyFuncModel:
    """The pyfunc model from a directory, a ``runs:/…`` or a ``models:/name@alias`` URI (looked
    up in ``tracking_uri``, default ``MLFLOW_TRACKING_URI`` or ``sqlite:///mlflow.db``)."""
    if urlparse(str(uri_or_path)).scheme in ("models", "runs"):
        return _load_pyfunc(local_model_path(str(uri_or_path), tracking_uri))
    return _load_pyfunc(str(uri_or_path))


def _load_pyfunc(path: str) -> PyFuncModel:
    """``mlflow.pyfunc.load_model``, without leaving the bundle's ``code/`` on ``sys.path``.
    In this process leadscore is imported already, so its own modules unpickle and run the
    scorer (a submodule is looked up in its package's path, not ``sys.path``); the carried copy
    is for environments without leadscore, and a process that loads many models (the API's
    reloads, the promotion gate, tests) would otherwise gain one entry per load."""
    before = set(sys.path)
    try:
        return mlflow.pyfunc.load_model(path)
    finally:
        sys.path[:] = [entry for entry in sys.path if entry in before]


def load_scorer(uri_or_path: str, tracking_uri: str | None = None) -> LeadScorer:
    """The LeadScorer inside a bundle (the fast serving path, no pyfunc schema checks)."""
    python_model = load_bundle(uri_or_path, tracking_uri).unwrap_python_model()
    if not isinstance(python_model, LeadBundle):
        raise TypeError(f"{uri_or_path} is not a leadscore bundle")
    if not isinstance(python_model.scorer, LeadScorer):
        raise TypeError(f"{uri_or_path}: its scorer is a {type(python_model.scorer).__name__}")
    return python_model.scorer
