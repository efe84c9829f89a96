"""The ``leadscore`` command line.

Each command parses its arguments, configures logging, and calls one thin stage module in
``pipelines/``. A :class:`UserError` becomes one line on stderr and exit code 2; a bug keeps its
traceback. Heavy imports happen inside the commands so ``--help`` stays fast.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import Callable, MutableMapping
from pathlib import Path
from typing import Annotated, TypeVar

import typer

from features.errors import UserError

app = typer.Typer(
    name="leadscore",
    help="Open, reproducible, calibrated lead scoring: generate, import, validate, features, "
    "train, evaluate, score and serve.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

ParamsOption = Annotated[Path, typer.Option("--params", help="params.yaml to read", dir_okay=False)]
TrackingUriOption = Annotated[
    str | None, typer.Option(help="default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db")
]

T = TypeVar("T")


def _run(action: Callable[[], T]) -> T:
    """Run a command body, turning user errors into one line and a non-zero exit. Outputs
    written through ``features.storage``'s atomic writers name themselves when the disk is
    full or read-only (a :class:`UserError`); any other write that meets those ends here as
    one line too, naming the file when the error does."""
    from features.storage import FULL_OR_READ_ONLY

    try:
        return action()
    except UserError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(code=2) from None
    except OSError as error:
        if error.errno not in FULL_OR_READ_ONLY:
            raise  # a bug, or an error a command should have named: keep the traceback
        problem = os.strerror(error.errno)
        where = f"{os.fsdecode(error.filename)}: " if error.filename else ""
        typer.echo(f"error: {where}cannot be written, {problem[:1].lower()}{problem[1:]}", err=True)
        raise typer.Exit(code=2) from None
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        raise typer.Exit(code=130) from None
    except Terminated:
        typer.echo("terminated", err=True)
        raise typer.Exit(code=143) from None


SPIN_COUNT = "1000"
"""How long an OpenMP thread spins before it sleeps (libgomp, LightGBM's OpenMP on Linux)."""


def quiet_openmp(environ: MutableMapping[str, str]) -> None:
    """OpenMP threads that spin only briefly while they wait (``GOMP_SPINCOUNT=1000``), unless
    the user chose a wait policy or spin count. libgomp's default spins 300,000 times at every
    barrier: on a machine shared with other work (CI, a second worker, a notebook) LightGBM's
    waiting thread then burns the core its working one needs. Measured (``bench/bench_threads.py``,
    2 threads, 2 cores): with one core busy, 14.5–47.0 s by default, 5.7–6.0 s with this,
    5.2–5.4 s with ``OMP_WAIT_POLICY=PASSIVE``; on an idle machine 2.9–3.0 s, 3.0–3.1 s and
    4.5–4.6 s (passive sleeps at every barrier, which costs when the cores are free). It must be set
    before LightGBM is first imported (libgomp reads it once), which every command here does
    lazily, after this."""
    if "OMP_WAIT_POLICY" not in environ and "GOMP_SPINCOUNT" not in environ:
        environ["GOMP_SPINCOUNT"] = SPIN_COUNT


PREDICTING_COMMANDS = frozenset({"score", "queue", "rescore", "serve"})
"""Commands that load boosters and predict, never fit: LightGBM comes without scikit-learn
(measured: `import pipelines.queue` 2.2-4.4 s and 230 MB -> 1.3-2.5 s and 164 MB; `monitor`
imports scikit-learn for its own metrics, so it is not here)."""


@app.callback()
def _configure(
    context: typer.Context,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="debug logging")] = False,
) -> None:
    quiet_openmp(os.environ)
    if context.invoked_subcommand in PREDICTING_COMMANDS:
        from models.boosters import lightgbm_without_sklearn

        lightgbm_without_sklearn()
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # pandas imports numexpr when it is installed (scikit-survival, a test dependency, brings
    # it), which announces its thread count at INFO: noise before a user error's one line.
    logging.getLogger("numexpr").setLevel(logging.WARNING)


@app.command()
def generate(
    leads: Annotated[int | None, typer.Option(min=10, help="number of leads")] = None,
    seed: Annotated[int | None, typer.Option(min=0, help="random seed")] = None,
    out: Annotated[Path, typer.Option(help="output directory")] = Path("data/raw"),
    dirty: Annotated[
        bool | None, typer.Option("--dirty/--clean", help="add realistic defects")
    ] = None,
    params: ParamsOption = Path("params.yaml"),
) -> None:
    """Write realistic synthetic CRM tables (Parquet) plus truth.parquet."""
    from pipelines import ingest

    _run(lambda: ingest.generate(out=out, params_path=params, leads=leads, seed=seed, dirty=dirty))


@app.command()
def ingest(
    out: Annotated[Path, typer.Option(help="output directory")] = Path("data/raw"),
    params: ParamsOption = Path("params.yaml"),
) -> None:
    """The pipeline's first stage: generate, copy canonical tables or import, per params.source."""
    from pipelines import ingest as stage

    _run(lambda: stage.run(out=out, params_path=params))


@app.command("import")
def import_(
    mapping: Annotated[Path, typer.Option(help="YAML mapping of the export", dir_okay=False)],
    input: Annotated[Path, typer.Option("--input", help="export file or directory")],
    out: Annotated[Path, typer.Option(help="output directory")] = Path("data/raw"),
) -> None:
    """Turn a flat or multi-table CRM export into canonical tables."""
    from pipelines import ingest as stage

    _run(lambda: stage.import_export(mapping=mapping, source=input, out=out))


@app.command()
def inspect(
    source: Annotated[Path, typer.Argument(help="export file or directory of export files")],
    out: Annotated[
        Path | None,
        typer.Option(
            help="write the draft mapping here (default: standard output)", dir_okay=False
        ),
    ] = None,
) -> None:
    """Profile an unknown CRM export and draft the mapping `leadscore import` reads."""
    from pipelines import inspect as stage

    draft = _run(lambda: stage.run(source=source, out=out))
    if out is None:
        typer.echo(draft, nl=False)  # the draft alone on stdout: `> mapping.yaml` works


@app.command()
def validate(
    raw: Annotated[Path, typer.Option(help="directory of canonical tables")] = Path("data/raw"),
    out: Annotated[Path, typer.Option(help="validated output directory")] = Path("data/validated"),
    report: Annotated[Path, typer.Option(help="validation report directory")] = Path(
        "artifacts/validation"
    ),
    params: ParamsOption = Path("params.yaml"),
) -> None:
    """Validate with Great Expectations; quarantine bad rows; fail on table-level problems."""
    from pipelines import validate as stage

    _run(lambda: stage.run(raw=raw, out=out, report=report, params_path=params))


@app.command()
def features(
    validated: Annotated[Path, typer.Option(help="validated tables")] = Path("data/validated"),
    out: Annotated[Path, typer.Option(help="output directory")] = Path("data/features"),
    params: ParamsOption = Path("params.yaml"),
) -> None:
    """Point-in-time snapshots, labels, split and features (+ the fitted engine)."""
    from pipelines import features as stage

    _run(lambda: stage.run(validated=validated, out=out, params_path=params))


@app.command()
def train(
    features_dir: Annotated[Path, typer.Option("--features", help="features directory")] = Path(
        "data/features"
    ),
    validated: Annotated[Path, typer.Option(help="validated tables")] = Path("data/validated"),
    out: Annotated[Path, typer.Option(help="output directory")] = Path("artifacts/train"),
    model: Annotated[
        Path | None,
        typer.Option(help="MLflow model bundle directory to write as well"),
    ] = None,
    params: ParamsOption = Path("params.yaml"),
) -> None:
    """LightGBM per target with early stopping, calibration, and both baselines."""
    from pipelines import train as stage

    _run(
        lambda: stage.run(
            features_dir=features_dir, validated=validated, out=out, params_path=params, model=model
        )
    )


@app.command()
def evaluate(
    features_dir: Annotated[Path, typer.Option("--features", help="features directory")] = Path(
        "data/features"
    ),
    validated: Annotated[Path, typer.Option(help="validated tables")] = Path("data/validated"),
    train_dir: Annotated[Path, typer.Option("--train", help="train stage output")] = Path(
        "artifacts/train"
    ),
    out: Annotated[Path, typer.Option(help="artifacts directory")] = Path("artifacts"),
    params: ParamsOption = Path("params.yaml"),
) -> None:
    """Test metrics beside the baselines, plots, shared KPIs and the model card."""
    from pipelines import evaluate as stage

    _run(
        lambda: stage.run(
            features_dir=features_dir,
            validated=validated,
            train=train_dir,
            out=out,
            params_path=params,
        )
    )


@app.command()
def rescore(
    validated: Annotated[Path, typer.Option(help="validated tables")] = Path("data/validated"),
    out: Annotated[Path, typer.Option(help="CRM-ready CSV", dir_okay=False)] = Path(
        "artifacts/crm_scores.csv"
    ),
    as_of: Annotated[
        str | None, typer.Option("--as-of", help="score as of this time (default: data horizon)")
    ] = None,
    changed_only: Annotated[
        bool, typer.Option("--changed-only", help="write only leads whose score or grade changed")
    ] = False,
    model: Annotated[
        str | None, typer.Option(help="default: models:/<mlflow.model_name>@champion")
    ] = None,
    tracking_uri: TrackingUriOption = None,
    params: ParamsOption = Path("params.yaml"),
) -> None:
    """Score every open lead with the champion, store the scores (LEADSCORE_STORE_URL) and
    write them back for the CRM: lead id, score, grade, handoff, trend, top reasons."""
    from pipelines import rescore as stage

    _run(
        lambda: stage.run(
            validated=validated,
            out=out,
            params_path=params,
            project_dir=Path.cwd(),
            as_of=as_of,
            changed_only=changed_only,
            model=model,
            tracking_uri=tracking_uri,
        )
    )


@app.command()
def monitor(
    validated: Annotated[Path, typer.Option(help="validated tables")] = Path("data/validated"),
    out: Annotated[Path, typer.Option(help="directory of monitoring.json", file_okay=False)] = Path(
        "artifacts"
    ),
    plots: Annotated[
        Path | None,
        typer.Option(help="directory of the plots' CSVs (default: OUT/plots)", file_okay=False),
    ] = None,
    model: Annotated[
        str | None, typer.Option(help="default: models:/<mlflow.model_name>@champion")
    ] = None,
    tracking_uri: TrackingUriOption = None,
    params: ParamsOption = Path("params.yaml"),
) -> None:
    """Track record and drift of the champion's stored scores (LEADSCORE_STORE_URL): backtest
    by grade and month, PSI/KS against training, a retrain recommendation."""
    from pipelines import monitor as stage

    _run(
        lambda: stage.run(
            validated=validated,
            out=out,
            params_path=params,
            model=model,
            tracking_uri=tracking_uri,
            project_dir=Path.cwd(),
            plots=plots,
        )
    )


@app.command()
def feedback(
    out: Annotated[
        Path | None,
        typer.Option(
            help="directory to write sales_events.parquet into (default: source.feedback)"
        ),
    ] = None,
    params: ParamsOption = Path("params.yaml"),
) -> None:
    """Sales' verdicts (accepted, rejected) from the score store as sales events for the next
    training (the ingest stage adds them); LEADSCORE_STORE_URL names the store."""
    from pipelines import feedback as stage

    _run(lambda: stage.run(out=out, params_path=params, project_dir=Path.cwd()))


@app.command()
def queue(
    validated: Annotated[Path, typer.Option(help="validated tables")] = Path("data/validated"),
    out: Annotated[Path, typer.Option(help="output Parquet file", dir_okay=False)] = Path(
        "artifacts/queue.parquet"
    ),
    model: Annotated[
        str | None,
        typer.Option(
            help="ranking model: models:/name@alias, models:/name/version or a bundle directory "
            "(default: models:/<mlflow.model_name>@champion)"
        ),
    ] = None,
    tracking_uri: TrackingUriOption = None,
    params: ParamsOption = Path("params.yaml"),
) -> None:
    """Sales queue: every open lead scored at the data horizon by the champion, best first."""
    from pipelines import queue as stage

    _run(
        lambda: stage.run(
            validated=validated,
            out=out,
            params_path=params,
            model=model,
            tracking_uri=tracking_uri,
        )
    )


@app.command()
def register(
    model: Annotated[Path, typer.Option(help="model bundle (train stage)")] = Path(
        "artifacts/model"
    ),
    features_dir: Annotated[Path, typer.Option("--features", help="features directory")] = Path(
        "data/features"
    ),
    validated: Annotated[Path, typer.Option(help="validated tables")] = Path("data/validated"),
    metrics: Annotated[Path, typer.Option(help="evaluate stage's metrics.json")] = Path(
        "artifacts/metrics.json"
    ),
    plots: Annotated[Path, typer.Option(help="plots directory to log")] = Path("artifacts/plots"),
    model_card: Annotated[Path, typer.Option(help="model card to log")] = Path(
        "artifacts/model_card.md"
    ),
    kpis: Annotated[Path, typer.Option(help="KPI report to log")] = Path("artifacts/kpis.json"),
    artifact: Annotated[
        list[Path] | None, typer.Option(help="another file or directory to log (repeatable)")
    ] = None,
    dvc_lock: Annotated[Path, typer.Option(help="dvc.lock (data hashes)")] = Path("dvc.lock"),
    out: Annotated[Path, typer.Option(help="registry record (JSON)", dir_okay=False)] = Path(
        "artifacts/registry.json"
    ),
    tracking_uri: TrackingUriOption = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="promote the new version even if the champion cannot be re-scored "
            "(a changed quality-lead definition, a bundle of an older leadscore)",
        ),
    ] = False,
    params: ParamsOption = Path("params.yaml"),
) -> None:
    """Log the run to MLflow, register the bundle; champion only if it beats the champion."""
    from pipelines import register as stage

    logged = [("plots", plots), ("", model_card), ("", kpis)]
    logged += [(path.name if path.is_dir() else "", path) for path in artifact or ()]
    _run(
        lambda: stage.run(
            model=model,
            features_dir=features_dir,
            validated=validated,
            out=out,
            params_path=params,
            metrics=metrics,
            artifacts=logged,
            dvc_lock=dvc_lock,
            tracking_uri=tracking_uri,
            force=force,
        )
    )


@app.command()
def score(
    model: Annotated[
        str, typer.Option(help="model: registry URI (models:/name@alias), run URI or directory")
    ],
    input: Annotated[Path, typer.Option("--input", help="leads table (CSV or Parquet)")],
    output: Annotated[Path, typer.Option(help="scores (CSV or Parquet, by extension)")],
    touches: Annotated[
        Path | None, typer.Option(help="touches table of those leads (CSV or Parquet)")
    ] = None,
    sales_events: Annotated[
        Path | None,
        typer.Option("--sales-events", help="sales events table of those leads (CSV or Parquet)"),
    ] = None,
    as_of: Annotated[
        str | None,
        typer.Option(
            "--as-of", help="score as of this time (ISO; default now; an as_of column wins)"
        ),
    ] = None,
    reasons: Annotated[
        int, typer.Option(min=0, max=20, help="top reasons per lead each way (0: none, fastest)")
    ] = 3,
    chunk: Annotated[int, typer.Option(min=1, help="leads per chunk (memory bound)")] = 100_000,
    tracking_uri: TrackingUriOption = None,
    keep: Annotated[
        list[str] | None,
        typer.Option(
            metavar="COLUMNS",
            help="input columns to carry through next to lead_id (comma-separated, repeatable: "
            "--keep name,email,owner)",
        ),
    ] = None,
) -> None:
    """Batch scoring: a leads table (+ optional touches / sales events) → the API's answer
    per lead, chunked, with a progress bar."""
    from pipelines import score as stage

    _run(
        lambda: stage.run(
            model=model,
            input=input,
            output=output,
            touches=touches,
            sales_events=sales_events,
            as_of=as_of,
            reasons=reasons,
            chunk=chunk,
            tracking_uri=tracking_uri,
            keep=stage.parse_keep(keep),
        )
    )


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="TCP port")] = 8000,
    model: Annotated[
        str | None,
        typer.Option(
            help="model URI or directory (default: $LEADSCORE_MODEL_URI or "
            "models:/lead-scoring@champion)"
        ),
    ] = None,
    workers: Annotated[int, typer.Option(min=1, help="worker processes")] = 1,
    access_log: Annotated[
        bool, typer.Option("--access-log/--no-access-log", help="log every request")
    ] = False,
    allow_no_model: Annotated[
        bool,
        typer.Option(
            "--allow-no-model",
            help="start even if the model cannot be loaded (503 until a reload succeeds)",
        ),
    ] = False,
) -> None:
    """The scoring API and the shared dashboard (FastAPI under uvicorn)."""
    from pipelines import serve as stage

    _run(
        lambda: stage.run(
            host=host,
            port=port,
            model=model,
            workers=workers,
            access_log=access_log,
            allow_no_model=allow_no_model,
        )
    )


class Terminated(BaseException):  # a signal, not an error of the program
    """SIGTERM, raised where the process is: every ``with`` block unwinds, so an atomic write
    in progress removes its temporary file (the default action would kill it on the spot).
    A BaseException, like KeyboardInterrupt: a library's ``except Exception`` must not swallow
    it (tqdm's did, when the signal came while it started its monitor thread, and the run
    went on to the end)."""


def _terminate(signum: int, frame: object) -> None:
    raise Terminated


def main() -> None:
    signal.signal(signal.SIGTERM, _terminate)
    app()


if __name__ == "__main__":
    main()
