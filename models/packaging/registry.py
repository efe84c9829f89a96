"""The model registry: one MLflow run per pipeline run, and the promotion gate.

Where the store is (tracking URI, artifact location) is :mod:`models.packaging.tracking`'s.

A run holds every parameter (flattened, logged in batches), the evaluation's numeric results
(flattened), the plots, model card, KPI and metrics reports as artifacts, the DVC data hashes
and the git commit as tags, and the model bundle as its logged model, registered under
``params.mlflow.model_name``. Like ``mlflow.evaluate``'s, the run also shows the new model's
evaluation as images: ``evaluation/*.png`` (:mod:`models.reports.plots`: reliability curve,
ROC, precision-recall, cumulative gain and lift by decile) for the primary target on the
labelled rows of the new test slice, the very rows and probabilities the promotion gate judges.

**Promotion gate.** The new version takes the alias ``champion`` only if, on the new test
slice (the ``test`` split of the new snapshots, primary target, labelled rows), its
``params.promotion.metric`` is at least as good as the current champion's re-scored on the same
rows: the champion computes its own features for those snapshots with its own fitted engine from
the validated tables. "At least as good" is judged on the difference new − champion (its sign
turned so that positive is better: higher is better for roc_auc and pr_auc, lower for brier and
log_loss) by a paired bootstrap (:func:`paired_bootstrap`): both models are scored on the same
resamples of the test *leads* (drawn with replacement, ``bootstrap_resamples`` of them, seed
``bootstrap_seed``; a lead brings all its snapshots, which share its outcome, so resampling
snapshots one by one would understate the spread). The new version is promoted only if

- the point difference is ≥ 0 (a model measured worse on the very same rows never takes
  ``champion``, however small the loss: a tolerance alone let ``num_leaves=63`` replace a better
  champion), and
- the ``bootstrap_quantile`` (5 %) percentile of the difference is ≥ −``tolerance`` (the new
  model is not plausibly worse by more than the tolerance: a gain that is mostly noise over a
  slice too small to tell is not enough).

Otherwise it takes ``challenger`` and the champion alias stays where it was. The difference, its
interval (the ``bootstrap_quantile`` and 1 − ``bootstrap_quantile`` percentiles), the number of
resamples and the decision go into the run, the version's tags and ``registry.json``.

Decisions for the awkward cases (recorded in ``reason``):

- no champion yet (first model, or the alias was removed): the new version becomes champion;
- the champion cannot be loaded or re-scored (its package version cannot unpickle, it has no
  model for the primary target, its engine rejects the new tables): nothing proves the new
  version is better, so the gate stays closed: the new version becomes challenger, with one
  warning line saying why, unless the registration is forced (``leadscore register --force``,
  e.g. after a deliberate change of the quality-lead definition or a leadscore upgrade whose
  bundles the old champion's cannot be read by);
- the metric is undefined on the new test slice (no labelled rows, or one class only): nothing
  can be judged, so the new version becomes champion only if there is no champion, else
  challenger.

**Idempotent.** A bundle is registered once: its scorer's SHA-256 is recorded on the version
(:data:`~models.packaging.bundle.SCORER_SHA256`) in the same transaction that creates it, and a
registration of a bundle whose hash is already a version of the model reuses that version (no
new one): it is logged as a new run, goes through the gate like a new version (unless it is the
champion already) and gets its alias. So ``dvc repro`` after a registration killed half-way
completes it with the version the killed one created, and re-running the stage on an unchanged
bundle adds no version.

**Logged only.** :func:`register` with ``log_only`` (the register stage inside ``dvc exp run``,
unless ``params.mlflow.register_experiments``) logs the run and the bundle as the run's model,
and records what the gate would have decided, but registers no version and moves no alias.
"""

from __future__ import annotations

import json
import logging
import math
import re
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import yaml
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH
from sklearn.metrics import average_precision_score

from features.engine.snapshots import labelled
from features.params import Params
from models.packaging.bundle import (
    SCORER_SHA256,
    load_scorer,
    log_bundle,
    scorer_file,
    sha256_of,
)
from models.packaging.loading import load
from models.packaging.tracking import CHALLENGER, CHAMPION, client, experiment_id, tracking_uri
from models.reports.evaluation import HIGHER_IS_BETTER, score_metric
from models.reports.plots import write_plots
from models.scorer import LeadScorer

logger = logging.getLogger(__name__)

_METRIC_KEY = re.compile(r"[^A-Za-z0-9_\-. /]")


# ------------------------------------------------------------- flattening
def flatten(value: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Nested mappings → ("a.b.c", leaf) pairs; lists and scalars are leaves."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            yield from flatten(item, f"{prefix}.{key}" if prefix else str(key))
    else:
        yield prefix, value


def param_entities(params: Params) -> list[Param]:
    out = []
    for key, value in flatten(params.model_dump(mode="json", by_alias=True)):
        text = value if isinstance(value, str) else json.dumps(value)
        out.append(Param(key, text[:MAX_PARAM_VAL_LENGTH]))
    return out


def metric_entities(
    results: Mapping[str, Any], prefix: str = "", timestamp: int | None = None
) -> list[Metric]:
    """Every finite numeric leaf (booleans as 0/1) of a results document as a metric."""
    stamp = int(time.time() * 1000) if timestamp is None else timestamp
    out = []
    for key, value in flatten(results, prefix):
        if isinstance(value, bool):
            value = float(value)
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            continue
        out.append(Metric(_METRIC_KEY.sub("_", key), float(value), stamp, 0))
    return out


# -------------------------------------------------------------- provenance
def dvc_hashes(lock: Path) -> dict[str, str]:
    """``{out path: md5}`` of every stage output recorded in ``dvc.lock`` (empty if absent)."""
    if not lock.exists():
        return {}
    document = yaml.safe_load(lock.read_text(encoding="utf-8")) or {}
    hashes = {}
    for stage in (document.get("stages") or {}).values():
        for out in stage.get("outs") or ():
            if out.get("md5"):
                hashes[str(out["path"])] = str(out["md5"])
    return hashes


def git_commit(cwd: Path | None = None) -> tuple[str | None, bool | None]:
    """(HEAD commit, whether tracked files differ from it); (None, None) outside git."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None, None
    return head or None, bool(status.strip())


def provenance_tags(lock: Path | None, repo: Path | None) -> dict[str, str]:
    tags: dict[str, str] = {}
    hashes = dvc_hashes(lock) if lock is not None else {}
    for path, md5 in hashes.items():
        if path.startswith("data/"):
            tags[f"dvc.md5.{path}"] = md5
    for path in ("data/features", "data/validated"):
        if path in hashes:
            tags["data_md5"] = hashes[path]
            tags["data_md5_of"] = path
            break
    commit, dirty = git_commit(repo)
    if commit:
        tags["git.commit"] = commit
        tags["mlflow.source.git.commit"] = commit
        tags["git.dirty"] = str(dirty).lower()
    return tags


# --------------------------------------------------------------- promotion
def metric_value(metric: str, y: np.ndarray, p: np.ndarray) -> float | None:
    """The promotion metric (the evaluation's own), or None where nothing can be judged (no
    rows, or one class only)."""
    y = np.asarray(y, dtype=np.float64)
    if len(np.unique(y)) < 2:
        return None
    return score_metric(metric, y, p)


def _roc_auc_weighted(
    groups: np.ndarray, n_groups: int, y: np.ndarray, w: np.ndarray
) -> float | None:
    """ROC AUC of rows weighted by ``w`` (a bootstrap's draw counts), ``groups`` the rank of
    each row's distinct probability (ascending): P(positive scored above negative) + ½ P(tie),
    as :func:`sklearn.metrics.roc_auc_score` with ``sample_weight``, in O(n) per resample."""
    positive = np.bincount(groups, weights=w * y, minlength=n_groups)
    negative = np.bincount(groups, weights=w * (1.0 - y), minlength=n_groups)
    total_positive, total_negative = positive.sum(), negative.sum()
    if total_positive <= 0 or total_negative <= 0:
        return None
    below = np.cumsum(negative) - negative  # negatives scored strictly lower
    return float(np.sum(positive * (below + 0.5 * negative)) / (total_positive * total_negative))


def weighted_metric(
    metric: str, y: np.ndarray, p: np.ndarray, w: np.ndarray, ranks: tuple[np.ndarray, int]
) -> float | None:
    """``metric`` on rows repeated ``w`` times (the resample), without materialising them.
    ``ranks``: ``np.unique(p, return_inverse=True)``'s inverse and size (roc_auc only)."""
    if metric == "roc_auc":
        return _roc_auc_weighted(ranks[0], ranks[1], y, w)
    keep = w > 0
    if metric == "pr_auc":
        if len(np.unique(y[keep])) < 2:
            return None
        return float(average_precision_score(y[keep], p[keep], sample_weight=w[keep]))
    if metric == "brier":
        return float(np.sum(w * (p - y) ** 2) / np.sum(w))
    clipped = np.clip(p, 1e-15, 1 - 1e-15)
    losses = -(y * np.log(clipped) + (1.0 - y) * np.log(1.0 - clipped))
    return float(np.sum(w * losses) / np.sum(w))


@dataclass
class Bootstrap:
    """The paired bootstrap of ``new − champion`` (raw difference, not sign-adjusted)."""

    difference: float
    low: float  # the ``quantile`` percentile of the resampled differences
    high: float  # the ``1 − quantile`` percentile
    resamples: int  # resamples where the metric was defined for both (the rest are skipped)
    quantile: float
    leads: int


def paired_bootstrap(
    metric: str,
    y: np.ndarray,
    p_new: np.ndarray,
    p_champion: np.ndarray,
    leads: np.ndarray,
    resamples: int,
    seed: int,
    quantile: float,
) -> Bootstrap | None:
    """Resample the test leads with replacement (each drawn lead brings all its snapshots) and
    score both models on the same resample: the spread of ``new − champion`` over ``resamples``
    draws (seeded: the same inputs give the same figures). None if the metric is undefined on
    the slice itself."""
    y = np.asarray(y, dtype=np.float64)
    p_new = np.asarray(p_new, dtype=np.float64)
    p_champion = np.asarray(p_champion, dtype=np.float64)
    new, champion = metric_value(metric, y, p_new), metric_value(metric, y, p_champion)
    if new is None or champion is None:
        return None
    codes, uniques = pd.factorize(pd.Series(leads).astype(str))
    n_leads = len(uniques)
    ranks_new = np.unique(p_new, return_inverse=True)[1]
    ranks_champion = np.unique(p_champion, return_inverse=True)[1]
    rank_new = (ranks_new, int(ranks_new.max()) + 1)
    rank_champion = (ranks_champion, int(ranks_champion.max()) + 1)
    rng = np.random.default_rng(seed)
    differences: list[float] = []
    for _ in range(resamples):
        draws = np.bincount(rng.integers(0, n_leads, n_leads), minlength=n_leads)
        w = draws[codes].astype(np.float64)
        a = weighted_metric(metric, y, p_new, w, rank_new)
        b = weighted_metric(metric, y, p_champion, w, rank_champion)
        if a is not None and b is not None:
            differences.append(a - b)
    if not differences:
        return None
    spread = np.asarray(differences)
    return Bootstrap(
        difference=new - champion,
        low=float(np.quantile(spread, quantile)),
        high=float(np.quantile(spread, 1 - quantile)),
        resamples=len(spread),
        quantile=quantile,
        leads=n_leads,
    )


def passes_gate(bootstrap: Bootstrap, metric: str, tolerance: float) -> tuple[bool, str]:
    """The promotion rule on the bootstrap (module docstring) and a sentence saying why."""
    sign = 1.0 if HIGHER_IS_BETTER[metric] else -1.0
    gain = sign * bootstrap.difference
    # the lower bound of the gain: the low percentile of the difference, or minus its high one
    gain_low = bootstrap.low if sign > 0 else -bootstrap.high
    if gain < 0:
        return False, "the new model is worse on the same rows"
    if gain_low < -tolerance:
        return False, (
            f"the {bootstrap.quantile:.0%} bound of the gain {gain_low:+.4f} is below "
            f"−{tolerance:g}: it may be worse by more than the tolerance"
        )
    return True, (
        f"no worse on the same rows, and the {bootstrap.quantile:.0%} bound of the gain "
        f"{gain_low:+.4f} ≥ −{tolerance:g}"
    )


def labelled_test_rows(snapshots: pd.DataFrame, target: str) -> pd.DataFrame:
    """Labelled rows of the ``test`` split for ``target``."""
    return snapshots.loc[labelled(snapshots, target, "test")].reset_index(drop=True)


def new_model_probabilities(scorer: LeadScorer, rows: pd.DataFrame, target: str) -> np.ndarray:
    """The new model on its own stored features (its engine made them)."""
    X = scorer.engine.matrix_from_frame(rows)
    return scorer.probabilities(X)[target]


def rescored_probabilities(
    scorer: LeadScorer, rows: pd.DataFrame, tables: Mapping[str, pd.DataFrame], target: str
) -> np.ndarray:
    """A (possibly older) model on the same snapshots, features from its own engine."""
    if target not in scorer.models:
        raise ValueError(f"the model has no '{target}' target (it has {sorted(scorer.models)})")
    X = scorer.engine.transform(
        rows[["lead_id", "as_of"]],
        tables["leads"],
        tables.get("touches"),
        tables.get("sales_events"),
    )
    return scorer.probabilities(X)[target]


@dataclass
class Comparison:
    metric: str
    target: str
    tolerance: float
    test_rows: int
    new: float | None
    champion: float | None = None
    champion_version: str | None = None
    promote: bool = True
    reason: str = ""
    # the model already is this registered version (the same bundle, registered before)
    version: str | None = None
    bootstrap: Bootstrap | None = None
    # the labelled test rows' outcomes and the new model's probabilities (the run's plots)
    labels: np.ndarray | None = field(default=None, repr=False)
    probabilities: np.ndarray | None = field(default=None, repr=False)


def compare(
    registry: MlflowClient,
    model_name: str,
    new_scorer: LeadScorer,
    snapshots: pd.DataFrame,
    tables: Callable[[], Mapping[str, pd.DataFrame]],
    params: Params,
    tracking_uri: str | None = None,
    force: bool = False,
    version: str | None = None,
) -> Comparison:
    """Apply the promotion gate (see the module docstring). ``tables`` is called only when a
    champion has to be re-scored (the validated tables of the test leads). ``force`` promotes
    the new version when the champion cannot be re-scored (never over a champion that can).
    ``version``: the registered version the new model already is (the same bundle): if it is
    the champion, it stays champion without a comparison with itself."""
    target = params.quality_lead.target
    metric = params.promotion.metric
    rows = labelled_test_rows(snapshots, target)
    y = rows[f"label_{target}"].to_numpy(dtype=np.float64)
    p_new = new_model_probabilities(new_scorer, rows, target)
    new = metric_value(metric, y, p_new)
    result = Comparison(metric, target, params.promotion.tolerance, len(rows), new)
    result.version = version
    result.labels, result.probabilities = y, p_new
    try:
        current = registry.get_model_version_by_alias(model_name, CHAMPION)
    except MlflowException:
        result.reason = "no champion yet"
        return result
    result.champion_version = str(current.version)
    if version is not None and str(current.version) == version:
        result.champion = new
        result.reason = f"the same bundle is champion version {version} already"
        return result
    if new is None:
        result.promote = False
        result.reason = (
            f"{metric} is undefined on the test slice ({len(rows)} labelled rows, "
            f"{int(np.sum(y == 1))} positive): kept the champion"
        )
        return result
    try:
        champion, _ = load(f"models:/{model_name}@{CHAMPION}", tracking_uri)
        probabilities = rescored_probabilities(champion, rows, tables(), target)
    except Exception as error:  # nothing proves the new model better: the gate stays closed
        problem = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
        result.promote = force
        result.reason = (
            f"champion version {current.version} could not be re-scored ({problem}); "
            + (
                "promoted anyway (--force)"
                if force
                else "kept the champion (leadscore register --force promotes the new version)"
            )
        )
        logger.warning("%s", result.reason)
        return result
    result.champion = metric_value(metric, y, probabilities)
    assert result.champion is not None  # same labels as the new model's, which were defined
    settings = params.promotion
    bootstrap = paired_bootstrap(
        metric,
        y,
        p_new,
        probabilities,
        rows["lead_id"].to_numpy(),
        settings.bootstrap_resamples,
        settings.bootstrap_seed,
        settings.bootstrap_quantile,
    )
    assert bootstrap is not None  # both metrics are defined on the slice
    result.bootstrap = bootstrap
    result.promote, why = passes_gate(bootstrap, metric, result.tolerance)
    result.reason = (
        f"{metric} {new:.4f} vs champion version {current.version}'s {result.champion:.4f}: "
        f"difference {bootstrap.difference:+.4f}, {1 - 2 * bootstrap.quantile:.0%} bootstrap "
        f"interval [{bootstrap.low:+.4f}, {bootstrap.high:+.4f}] ({bootstrap.resamples} "
        f"resamples of {bootstrap.leads} test leads, {len(rows)} snapshots); "
        + ("promoted: " if result.promote else "kept the champion: ")
        + why
    )
    return result


# ----------------------------------------------------------- recovery
def aliases_by_version(registry: MlflowClient, model_name: str) -> dict[str, list[str]]:
    """``{version: [alias, …]}`` of the registered model (``search_model_versions`` leaves
    every version's ``aliases`` empty: only the registered model knows them)."""
    try:
        model = registry.get_registered_model(model_name)
    except MlflowException:
        return {}
    out: dict[str, list[str]] = {}
    for alias, version in (model.aliases or {}).items():
        out.setdefault(str(version), []).append(alias)
    return out


ORPHAN = "leadscore.orphan"
"""Tag of a registered version whose registration never finished (no alias was given)."""


def recover_unfinished(registry: MlflowClient, experiment: str, model_name: str) -> None:
    """Clean up after a registration that was killed half-way, before the next one starts:
    its run, left ``RUNNING`` for ever, is marked ``FAILED``; a version it registered but never
    gave an alias to is tagged :data:`ORPHAN` (it takes no alias until a registration of the
    same bundle completes it, which removes the tag). Registrations do not run concurrently
    (DVC refuses a second ``dvc repro`` in the same project)."""
    for run in registry.search_runs([experiment], filter_string="attributes.status = 'RUNNING'"):
        registry.set_terminated(run.info.run_id, status="FAILED")
        registry.set_tag(run.info.run_id, "leadscore.recovered", "registration was interrupted")
        logger.warning("run %s was left unfinished: marked FAILED", run.info.run_id)
    aliased = aliases_by_version(registry, model_name)
    for version in registry.search_model_versions(f"name = '{model_name}'"):
        tags = version.tags or {}
        if "alias_given" in tags or ORPHAN in tags or str(version.version) in aliased:
            continue
        registry.set_model_version_tag(
            model_name, version.version, ORPHAN, "registration did not finish (no alias given)"
        )
        logger.warning(
            "%s version %s was registered but never given an alias: tagged %s",
            model_name,
            version.version,
            ORPHAN,
        )


def registered_version(registry: MlflowClient, model_name: str, digest: str) -> str | None:
    """The version of ``model_name`` whose scorer has SHA-256 ``digest`` (None: never
    registered). Should older registrations have left several, the champion if it is one of
    them, else the newest."""
    found = [
        str(version.version)
        for version in registry.search_model_versions(f"name = '{model_name}'")
        if (version.tags or {}).get(SCORER_SHA256) == digest
    ]
    if not found:
        return None
    aliased = aliases_by_version(registry, model_name)
    found.sort(key=lambda version: (CHAMPION in aliased.get(version, ()), int(version)))
    return found[-1]


# ---------------------------------------------------------------- the run
@dataclass
class RunInputs:
    """Everything one registration logs. Paths that do not exist are skipped."""

    model_dir: Path
    params: Params
    snapshots: pd.DataFrame
    tables: Callable[[], Mapping[str, pd.DataFrame]]
    results: Mapping[str, Any] | None = None
    artifacts: Sequence[tuple[str, Path]] = ()
    dvc_lock: Path | None = None
    repo: Path | None = None
    run_name: str | None = None


def register(
    inputs: RunInputs,
    uri: str | None = None,
    scorer: LeadScorer | None = None,
    force: bool = False,
    log_only: str | None = None,
) -> dict[str, Any]:
    """Log one run, register its bundle (or reuse the version that holds it already: see the
    module docstring), apply the promotion gate; returns the registry record (model name,
    version, ``reused``, alias, both metric values, the bootstrap, run id…). ``scorer``: the
    bundle's scorer when the caller has already loaded (and verified) it; else it is loaded
    here, once. ``force``: promote even when the champion cannot be re-scored (see
    :func:`compare`). ``log_only``: why nothing is to be registered (e.g. "DVC experiment
    'x'"): the run and its bundle are logged and the gate's verdict recorded, but no version is
    registered and no alias moves.

    Registration is a process of its own (the register stage): MLflow's fluent API, which
    ``start_run`` and ``log_model`` need, is pointed at ``uri`` for that process. Everything
    else takes the URI explicitly; serving never calls this."""
    resolved = tracking_uri(uri)
    if mlflow.get_tracking_uri() != resolved:
        mlflow.set_tracking_uri(resolved)
    params = inputs.params
    name = params.mlflow.model_name
    registry = client(resolved)
    experiment = experiment_id(registry, params.mlflow.experiment, resolved)
    if log_only is None:
        # Not for log-only runs: queued experiments may run side by side (`dvc queue start
        # -j 2`), and a concurrent experiment's run is RUNNING, not abandoned.
        recover_unfinished(registry, experiment, name)
    digest = sha256_of(scorer_file(inputs.model_dir))
    existing = registered_version(registry, name, digest)
    if scorer is None:
        scorer = load_scorer(str(inputs.model_dir))
    comparison = compare(
        registry, name, scorer, inputs.snapshots, inputs.tables, params, resolved, force, existing
    )
    alias = CHAMPION if comparison.promote else CHALLENGER
    bootstrap = comparison.bootstrap

    tags = provenance_tags(inputs.dvc_lock, inputs.repo)
    tags["primary_target"] = params.quality_lead.target
    tags["promotion.reason"] = comparison.reason
    tags["registry.action"] = "logged only" if log_only else "registered"
    if log_only:
        tags["registry.log_only"] = log_only
    promotion: dict[str, Any] = {
        f"promotion.{comparison.metric}.new": comparison.new,
        f"promotion.{comparison.metric}.champion": comparison.champion,
        "promotion.test_rows": comparison.test_rows,
        "promotion.promoted": comparison.promote and not log_only,
        "promotion.would_promote": comparison.promote,
    }
    if bootstrap is not None:
        promotion |= {
            "promotion.difference": bootstrap.difference,
            "promotion.difference_low": bootstrap.low,
            "promotion.difference_high": bootstrap.high,
            "promotion.bootstrap_resamples": bootstrap.resamples,
        }
    number: str | None = None
    logged_uri = ""
    with mlflow.start_run(experiment_id=experiment, run_name=inputs.run_name) as run:
        run_id = run.info.run_id
        registry.log_batch(
            run_id,
            metrics=metric_entities(inputs.results or {}) + metric_entities(promotion),
            params=param_entities(params),
            tags=[RunTag(k, v) for k, v in tags.items()],
        )
        for artifact_path, path in inputs.artifacts:
            if path.is_dir():
                registry.log_artifacts(run_id, str(path), artifact_path)
            elif path.is_file():
                registry.log_artifact(run_id, str(path), artifact_path or None)
        log_evaluation_plots(registry, run_id, comparison)
        if log_only:
            # the run keeps the bundle, so the experiment's model can be registered later from
            # its run, but the registry (versions, aliases) is not touched
            logged_uri = log_bundle(inputs.model_dir, name="model").model_uri
        else:
            number = _register_version(
                registry, name, inputs.model_dir, digest, existing, run_id, alias, comparison
            )
    if log_only:
        logger.info(
            "%s: logged run %s only, no version registered, no alias moved (the gate would "
            "have %s it: %s)",
            log_only,
            run_id,
            "promoted" if comparison.promote else "kept the champion over",
            comparison.reason,
        )
    elif existing is None:
        logger.info("registered %s version %s as %s (%s)", name, number, alias, comparison.reason)
    else:
        logger.info(
            "%s version %s is this bundle already (sha256 %s…): no new version; alias %s (%s)",
            name,
            number,
            digest[:12],
            alias,
            comparison.reason,
        )
    if log_only:
        action = "logged only"
        why = (
            f"{log_only}: the run is logged in MLflow, no version was registered and no alias moved"
        )
    elif existing is None:
        action, why = "registered", f"new version {number} with alias {alias}"
    else:
        action = "reused"
        why = f"this bundle is version {number} already (same scorer SHA-256); alias {alias}"
    return {
        "model_name": name,
        "action": action,
        "action_reason": why,
        "registered": not log_only,
        "version": number if not log_only else existing,
        "reused": existing is not None,
        "alias": None if log_only else alias,
        "promoted": comparison.promote and not log_only,
        "would_promote": comparison.promote,
        "run_id": run_id,
        "experiment": params.mlflow.experiment,
        # log-only: the run's logged model (`models:/<model id>`), which loads like a version
        "model_uri": f"models:/{name}/{number}" if number else logged_uri,
        "target": comparison.target,
        "metric": comparison.metric,
        "tolerance": comparison.tolerance,
        "test_rows": comparison.test_rows,
        "new_value": comparison.new,
        "champion_value": comparison.champion,
        "champion_version": comparison.champion_version,
        "difference": bootstrap.difference if bootstrap else None,
        "difference_interval": [bootstrap.low, bootstrap.high] if bootstrap else None,
        "interval_quantiles": ([bootstrap.quantile, 1 - bootstrap.quantile] if bootstrap else None),
        "bootstrap_resamples": bootstrap.resamples if bootstrap else None,
        "bootstrap_leads": bootstrap.leads if bootstrap else None,
        "reason": comparison.reason,
    }


EVALUATION_DIR = "evaluation"
"""The run's artifact folder of the evaluation images."""


def log_evaluation_plots(registry: MlflowClient, run_id: str, comparison: Comparison) -> list[str]:
    """Log the PNG images of :mod:`models.reports.plots` for the new model on the labelled
    test rows of the primary target (those :func:`compare` judged) under
    :data:`EVALUATION_DIR`; returns their artifact paths (none without labelled rows)."""
    if comparison.labels is None or comparison.probabilities is None:
        return []
    title = f"{comparison.target}, test slice ({comparison.test_rows:,} rows)"
    with tempfile.TemporaryDirectory(prefix="leadscore-plots-") as scratch:
        written = write_plots(comparison.labels, comparison.probabilities, Path(scratch), title)
        if written:
            registry.log_artifacts(run_id, scratch, EVALUATION_DIR)
    return [f"{EVALUATION_DIR}/{path.name}" for path in written]


def _register_version(
    registry: MlflowClient,
    name: str,
    model_dir: Path,
    digest: str,
    existing: str | None,
    run_id: str,
    alias: str,
    comparison: Comparison,
) -> str:
    """Inside the run: log and register the bundle (or reuse ``existing``), give it ``alias``
    and record the gate on the version; returns the version number."""
    if existing is None:
        info = log_bundle(model_dir, name="model")
        # The hash goes in with the version (one transaction): a registration killed right
        # after this line is still found, and completed, by the next one.
        number = str(
            mlflow.register_model(info.model_uri, name, tags={SCORER_SHA256: digest}).version
        )
    else:
        number = existing
        registry.set_tag(run_id, "registry.reused", "true")
    registry.set_registered_model_alias(name, alias, number)
    version_tags = {
        "alias_given": alias,
        "promotion.metric": comparison.metric,
        "promotion.reason": comparison.reason,
    }
    if comparison.bootstrap is not None:
        version_tags["promotion.difference"] = f"{comparison.bootstrap.difference:.6f}"
        version_tags["promotion.difference_interval"] = (
            f"[{comparison.bootstrap.low:.6f}, {comparison.bootstrap.high:.6f}]"
        )
    for key, value in version_tags.items():
        registry.set_model_version_tag(name, number, key, value)
    if existing is not None and ORPHAN in (registry.get_model_version(name, number).tags or {}):
        registry.delete_model_version_tag(name, number, ORPHAN)  # finished now
    registry.set_tag(run_id, "registry.version", number)
    registry.set_tag(run_id, "registry.alias", alias)
    return number
