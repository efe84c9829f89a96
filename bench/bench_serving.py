"""Serving benchmark: the API over HTTP, ``mlflow models serve`` beside it, batch scoring.

    python bench/bench_serving.py [--leads 20000] [--batch-leads 1000000] [--rounds 5]
                                  [--seconds 10] [--concurrency 16] [--workdir DIR]
                                  [--skip-mlflow] [--skip-batch]

Runs from any working directory: the workdir is made absolute and every server and
``leadscore score`` runs with it as cwd and its own ``sqlite:///<workdir>/mlflow.db``.
Builds (or reuses, with ``--workdir``) a model the way the pipeline does: simulator data,
features, training with params.yaml, the MLflow bundle, registered as
``lead-scoring@champion`` in a sqlite store. Then, with ``leadscore serve`` (one worker) and
``mlflow models serve`` on the same registered model running at once:

1. the answers for one lead with 30 touches: every ``p_<target>`` of ``/v1/score`` against
   ``/invocations`` for the same record (exits non-zero when they differ);
2. throughput at ``--concurrency`` in ``--rounds`` interleaved rounds of ``--seconds`` (the
   side that goes first alternates), median req/s per side, server-tree CPU ms per request
   beside wall ms per request, and the ratio;
3. at concurrency 1 on one keep-alive connection, ``GET /healthz`` and the one-lead score
   alternating request by request: p50(score)/p50(healthz) and p99/p50 of the score;
4. a batch of 1,000 leads over HTTP (``/v1/score/batch``);
5. ``leadscore serve --workers 2`` against the one-worker server, interleaved as in 2;
6. ``leadscore score`` on ``--batch-leads`` leads (the simulated leads tiled with new ids),
   rounds alternating with raw ``Booster.predict`` (every target) on the same feature matrix,
   and reasons on a slice.

The load average is printed at the start and end of each section. Client and server share
the machine: on 2 cores the client's own CPU (one GIL-bound process) shows in the figures,
and most of all in the ``--workers 2`` ratio.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
import pandas as pd
import psutil
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from serving_client import (
    Request,
    Round,
    alternating_round,
    percentile_ms,
    send,
    timed_round,
)
from serving_client import (
    load as loadavg,
)

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
KEY = "bench-key-0123456789"


# -------------------------------------------------------------------- build
def build(workdir: Path, leads: int) -> dict[str, Any]:
    """Simulated data, features, trained scorer, bundle, registry (skipped when present)."""
    from threadpoolctl import threadpool_limits

    from features.engine.table import build_feature_table
    from features.ingest.simulate import simulate
    from features.params import load_params
    from features.storage import read_validated
    from models.packaging.bundle import example_input, save_bundle
    from models.packaging.registry import RunInputs, register
    from models.training import train_all

    params = load_params(REPO / "params.yaml")
    store = f"sqlite:///{workdir / 'mlflow.db'}"
    done = workdir / "built.json"
    if done.exists():
        return dict(json.loads(done.read_text()))
    workdir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    simulate(params.generate.model_copy(update={"leads": leads}), workdir / "raw")
    tables = read_validated(workdir / "raw")
    engine, snapshots = build_feature_table(tables, params, None)
    with threadpool_limits(2):
        scorer, _ = train_all(snapshots, engine, params)
    save_bundle(scorer, workdir / "model", example_input(tables, 3, scorer=scorer))
    record = register(RunInputs(workdir / "model", params, snapshots, lambda: tables), uri=store)
    info = {
        "store": store,
        "version": record["version"],
        "trees": {t: m.best_iteration for t, m in scorer.models.items()},
        "seconds": round(time.perf_counter() - start, 1),
    }
    done.write_text(json.dumps(info))
    return info


def one_lead_request(workdir: Path, touches: int = 30) -> tuple[dict[str, Any], dict[str, Any]]:
    """An open lead with at least ``touches`` touches: the API body and the MLflow record."""
    from features.storage import read_validated
    from models.packaging.bundle import bundle_input

    tables = read_validated(workdir / "raw")
    counts = tables["touches"].groupby("lead_id").size()
    lead_id = str(counts[counts >= touches].index[len(counts[counts >= touches]) // 2])
    lead = tables["leads"][tables["leads"]["lead_id"] == lead_id]
    mine = tables["touches"][tables["touches"]["lead_id"] == lead_id].sort_values("occurred_at")
    as_of = pd.Timestamp(mine["occurred_at"].iloc[touches - 1]) + pd.Timedelta(seconds=1)
    sales = tables["sales_events"][tables["sales_events"]["lead_id"] == lead_id]
    frame = bundle_input(lead, mine.head(touches), sales, as_of=as_of)
    record = json.loads(json.dumps(frame.to_dict("records")[0], default=str))
    body = {
        "lead": {
            k: v
            for k, v in record.items()
            if k not in ("touches", "sales_events", "as_of") and v is not None
        },
        "touches": record["touches"],
        "sales_events": record["sales_events"],
        "as_of": record["as_of"],
    }
    return body, record


# ---------------------------------------------------------------- servers
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_status(port: int, path: str) -> int:
    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        connection.request("GET", path)
        status = connection.getresponse().status
        connection.close()
        return int(status)
    except OSError:
        return 0


@contextlib.contextmanager
def running(
    command: list[str], env: dict[str, str], port: int, ready: str, cwd: Path, name: str
) -> Iterator[tuple[subprocess.Popen[bytes], float]]:
    """Start a server in ``cwd`` (its output in ``cwd/<name>.log``); yield it and the seconds
    it took to answer ``ready`` with 200."""
    start = time.perf_counter()
    log = (cwd / f"{name}.log").open("wb")
    process = subprocess.Popen(
        command,
        env=env,
        cwd=cwd,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        while http_status(port, ready) != 200:
            if process.poll() is not None:
                raise RuntimeError(
                    f"{' '.join(command[1:3])} exited with {process.returncode}; see {log.name}"
                )
            if time.perf_counter() - start > 180:
                raise RuntimeError(f"{command[0]} not ready after 180 s")
            time.sleep(0.05)
        yield process, time.perf_counter() - start
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()


def tree_rss(process: subprocess.Popen[bytes]) -> float:
    """MB of the process and its children (uvicorn may exec or fork workers)."""
    root = psutil.Process(process.pid)
    total = 0
    for member in [root, *root.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            total += member.memory_info().rss
    return total / 2**20


# --------------------------------------------------------------- sections
def ratio_line(what: str, mine: float, peer_name: str, theirs: float, unit: str, goal: str) -> str:
    return (
        f"  {what}: leadscore {mine:.1f} {unit} vs {peer_name} {theirs:.1f} {unit} = "
        f"{mine / theirs:.2f}x (goal {goal})"
    )


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def serve_env(workdir: Path, info: dict[str, Any]) -> dict[str, str]:
    return {
        **os.environ,
        "MLFLOW_TRACKING_URI": info["store"],
        "LEADSCORE_API_KEYS": f"{KEY}:score",
        "LEADSCORE_MODEL_URI": "models:/lead-scoring@champion",
        "LEADSCORE_PARAMS": str(REPO / "params.yaml"),
        "LEADSCORE_ARTIFACTS": str(workdir / "artifacts"),
    }


def leadscore_command(port: int, workers: int) -> list[str]:
    return [str(BIN / "leadscore"), "serve", "--port", str(port), "--workers", str(workers)]


def mlflow_command(port: int) -> list[str]:
    return [
        str(BIN / "mlflow"),
        "models",
        "serve",
        "-m",
        "models:/lead-scoring@champion",
        "--env-manager",
        "local",
        "-p",
        str(port),
        "-h",
        "127.0.0.1",
    ]


def decimals(value: float) -> int:
    text = repr(float(value))
    return len(text.split(".")[1]) if "." in text and "e" not in text else 17


def check_answers(ls_port: int, score: Request, ml_port: int, invoke: Request) -> str:
    """The primary target's probability from both servers for the same record; raises when
    they disagree beyond 1e-9 or the precision leadscore rounds to."""
    connection = http.client.HTTPConnection("127.0.0.1", ls_port, timeout=60)
    status, raw = send(connection, score)
    connection.close()
    if status != 200:
        raise RuntimeError(f"leadscore /v1/score answered {status}: {raw[:300]!r}")
    mine = json.loads(raw)
    connection = http.client.HTTPConnection("127.0.0.1", ml_port, timeout=60)
    status, raw = send(connection, invoke)
    connection.close()
    if status != 200:
        raise RuntimeError(f"mlflow /invocations answered {status}: {raw[:300]!r}")
    theirs = json.loads(raw)
    rows = theirs["predictions"] if isinstance(theirs, dict) else theirs
    row = rows[0] if isinstance(rows, list) else rows
    primary = PRIMARY[0]
    key = f"p_{primary}"
    if key not in mine or key not in row:
        raise RuntimeError(
            f"{key} missing: leadscore keys {sorted(mine)}, mlflow keys {sorted(row)}"
        )
    lines = []
    for name in sorted(k for k in mine if k.startswith("p_") and k in row):
        a, b = float(mine[name]), float(row[name])
        places = decimals(a)
        tolerance = max(1e-9, 0.5 * 10.0**-places + 1e-12) if places < 9 else 1e-9
        ok = abs(a - b) <= tolerance
        lines.append(
            f"  {name}{' (primary)' if name == key else ''}: leadscore {a!r} vs mlflow {b!r}, "
            f"|diff| {abs(a - b):.2e} <= {tolerance:.1e}: {'OK' if ok else 'MISMATCH'}"
        )
        if not ok:
            print("\n".join(lines))
            raise SystemExit(f"ANSWERS DIFFER for {name}: leadscore {a!r}, mlflow {b!r}")
    return "\n".join(lines)


PRIMARY: list[str] = []


def show_round(label: str, r: Round) -> str:
    return (
        f"{label} {r.rps:7.1f} req/s, wall {r.wall_ms_per_request:6.2f} ms/req, "
        f"server CPU {r.cpu_ms_per_request:6.2f} ms/req"
        + (f", FAILURES {r.failures}" if r.failures else "")
    )


def summary(name: str, rounds: list[Round]) -> str:
    return (
        f"  {name:<32} median {median([r.rps for r in rounds]):7.1f} req/s, "
        f"server CPU {median([r.cpu_ms_per_request for r in rounds]):6.2f} ms/req vs wall "
        f"{median([r.wall_ms_per_request for r in rounds]):6.2f} ms/req "
        f"(rounds: {', '.join(f'{r.rps:.0f}' for r in rounds)})"
    )


def interleaved(
    sides: list[tuple[str, int, Request, int]], rounds: int, seconds: float, concurrency: int
) -> dict[str, list[Round]]:
    """Rounds alternating between the sides (name, port, request, server pid); the starting
    side alternates too, so that neither always runs first."""
    out: dict[str, list[Round]] = {name: [] for name, *_ in sides}
    for index in range(rounds):
        order = sides if index % 2 == 0 else sides[::-1]
        for name, port, request, pid in order:
            result = timed_round(port, request, seconds, concurrency, pid)
            out[name].append(result)
            print(f"    round {index + 1} {show_round(f'{name:<26}', result)}", flush=True)
    return out


def bench_servers(workdir: Path, info: dict[str, Any], args: argparse.Namespace) -> None:
    body, record = one_lead_request(workdir)
    env = serve_env(workdir, info)
    headers = {"Content-Type": "application/json", "X-API-Key": KEY}
    score = Request("POST", "/v1/score", json.dumps(body).encode(), headers)
    healthz = Request("GET", "/healthz")
    invoke = Request(
        "POST",
        "/invocations",
        json.dumps({"dataframe_records": [record]}).encode(),
        {"Content-Type": "application/json"},
    )
    with_mlflow = not args.skip_mlflow and shutil.which("mlflow", path=str(BIN)) is not None
    c = args.concurrency
    with contextlib.ExitStack() as stack:
        one_port = free_port()
        one, cold = stack.enter_context(
            running(leadscore_command(one_port, 1), env, one_port, "/readyz", workdir, "ls1")
        )
        rss = tree_rss(one)
        print(
            f"\nleadscore serve --workers 1: ready in {cold:.2f} s (goal <= 2 s: "
            f"{'met' if cold <= 2 else 'missed'}), RSS {rss:.0f} MB (goal <= 300 MB: "
            f"{'met' if rss <= 300 else 'missed'})"
        )
        ml_port = 0
        if with_mlflow:
            ml_env = {**env, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
            ml_port = free_port()
            flow, cold = stack.enter_context(
                running(mlflow_command(ml_port), ml_env, ml_port, "/ping", workdir, "mlflow")
            )
            print(
                f"mlflow models serve (same registered model, --env-manager local): ready in "
                f"{cold:.2f} s, RSS {tree_rss(flow):.0f} MB"
            )
            print("\nanswers, one lead with 30 touches (same record to both):")
            print(check_answers(one_port, score, ml_port, invoke))

            print(f"\n[throughput, leadscore vs mlflow, c={c}] {loadavg()}")
            results = interleaved(
                [
                    ("leadscore serve (1 worker)", one_port, score, one.pid),
                    ("mlflow models serve", ml_port, invoke, flow.pid),
                ],
                args.rounds,
                args.seconds,
                c,
            )
            mine, theirs = results["leadscore serve (1 worker)"], results["mlflow models serve"]
            print(summary("leadscore serve (1 worker)", mine))
            print(summary("mlflow models serve", theirs))
            print(
                ratio_line(
                    f"throughput c={c}",
                    median([r.rps for r in mine]),
                    "mlflow models serve",
                    median([r.rps for r in theirs]),
                    "req/s",
                    ">= 20x",
                )
            )
            print(f"[end throughput, leadscore vs mlflow] {loadavg()}")
        else:
            print("mlflow models serve: skipped" if args.skip_mlflow else "mlflow: not installed")

        print(f"\n[latency c=1, /healthz and /v1/score alternating, keep-alive] {loadavg()}")
        health_all: list[float] = []
        score_all: list[float] = []
        for index in range(args.rounds):
            h, s, failures = alternating_round(one_port, healthz, score, args.seconds)
            health_all += h
            score_all += s
            print(
                f"    round {index + 1}: healthz p50 {percentile_ms(h, 50):.2f} ms, score p50 "
                f"{percentile_ms(s, 50):.2f} ms p99 {percentile_ms(s, 99):.2f} ms "
                f"({len(s)} each)" + (f", FAILURES {failures}" if failures else ""),
                flush=True,
            )
        h50, s50, s99 = (
            percentile_ms(health_all, 50),
            percentile_ms(score_all, 50),
            percentile_ms(score_all, 99),
        )
        print(f"  GET /healthz p50 {h50:.2f} ms; one-lead score p50 {s50:.2f} ms, p99 {s99:.2f} ms")
        print(
            f"  latency p50: leadscore score {s50:.2f} ms vs leadscore /healthz {h50:.2f} ms = "
            f"{s50 / h50:.2f}x (goal <= 6x)"
        )
        print(
            f"  latency tail: leadscore score p99 {s99:.2f} ms vs its p50 {s50:.2f} ms = "
            f"{s99 / s50:.2f}x (goal <= 3x)"
        )
        print(f"[end latency] {loadavg()}")

        batch = build_batch(workdir, 1000)
        blob = json.dumps({"leads": batch}).encode()
        connection = http.client.HTTPConnection("127.0.0.1", one_port, timeout=300)
        times = []
        for _ in range(4):
            begin = time.perf_counter()
            status, _ = send(connection, Request("POST", "/v1/score/batch", blob, headers))
            if status != 200:
                raise RuntimeError(f"/v1/score/batch answered {status}")
            times.append(time.perf_counter() - begin)
        connection.close()
        seconds = median(times[1:])
        print(
            f"\n  batch of 1,000 leads over HTTP ({len(blob) / 2**20:.1f} MB JSON): "
            f"{seconds:.2f} s per request, {1000 / seconds:.0f} leads/s; RSS {tree_rss(one):.0f} MB"
        )

        two_port = free_port()
        two, cold = stack.enter_context(
            running(leadscore_command(two_port, 2), env, two_port, "/readyz", workdir, "ls2")
        )
        print(f"\nleadscore serve --workers 2: ready in {cold:.2f} s, RSS {tree_rss(two):.0f} MB")
        print(f"[throughput, --workers 2 vs 1, c={c}] {loadavg()}")
        results = interleaved(
            [
                ("leadscore serve --workers 2", two_port, score, two.pid),
                ("leadscore serve --workers 1", one_port, score, one.pid),
            ],
            args.rounds,
            args.seconds,
            c,
        )
        two_r, one_r = (
            results["leadscore serve --workers 2"],
            results["leadscore serve --workers 1"],
        )
        print(summary("leadscore serve --workers 2", two_r))
        print(summary("leadscore serve --workers 1", one_r))
        print(
            ratio_line(
                f"throughput c={c}, --workers 2",
                median([r.rps for r in two_r]),
                "leadscore --workers 1",
                median([r.rps for r in one_r]),
                "req/s",
                ">= 1.6x",
            )
        )
        print(f"[end throughput, --workers 2 vs 1] {loadavg()}")


def build_batch(workdir: Path, n: int) -> list[dict[str, Any]]:
    from features.storage import read_validated
    from models.packaging.bundle import bundle_input

    tables = read_validated(workdir / "raw")
    leads = tables["leads"].sample(n, random_state=0).reset_index(drop=True)
    horizon = pd.to_datetime(tables["touches"]["occurred_at"], utc=True).max()
    ids = set(leads["lead_id"])
    touches = tables["touches"][tables["touches"]["lead_id"].isin(ids)]
    touches = touches.sort_values("occurred_at").groupby("lead_id").tail(30)
    sales = tables["sales_events"][tables["sales_events"]["lead_id"].isin(ids)]
    frame = bundle_input(leads, touches, sales, as_of=horizon)
    out = []
    for record in json.loads(frame.to_json(orient="records", date_format="iso")):
        out.append(
            {
                "lead": {
                    k: v
                    for k, v in record.items()
                    if k not in ("touches", "sales_events", "as_of") and v is not None
                },
                "touches": record["touches"],
                "sales_events": record["sales_events"],
                "as_of": record["as_of"],
            }
        )
    return out


def tile_inputs(workdir: Path, target: int) -> tuple[Path, Path, Path, int]:
    """The simulated tables repeated with new ids up to ``target`` leads (Parquet, streamed)."""
    out = workdir / f"batch-{target}"
    leads_path, touches_path, sales_path = (
        out / "leads.parquet",
        out / "touches.parquet",
        out / "sales_events.parquet",
    )
    if leads_path.exists():
        return (
            leads_path,
            touches_path,
            sales_path,
            int(pq.ParquetFile(leads_path).metadata.num_rows),
        )
    out.mkdir(parents=True, exist_ok=True)
    raw = workdir / "raw"
    leads = pq.read_table(raw / "leads.parquet")
    touches = pq.read_table(
        raw / "touches.parquet", columns=["lead_id", "occurred_at", "touch_type", "campaign_id"]
    )
    sales = pq.read_table(raw / "sales_events.parquet")
    copies = int(np.ceil(target / leads.num_rows))
    writers: dict[str, pq.ParquetWriter] = {}
    written = 0
    try:
        for copy in range(copies):
            take = min(leads.num_rows, target - written)
            suffix = f"-{copy}"
            parts = {
                "leads": leads.slice(0, take),
                "touches": touches,
                "sales_events": sales,
            }
            kept = set(parts["leads"]["lead_id"].to_pylist())
            for name, table in parts.items():
                if name != "leads":
                    table = table.filter(
                        pc.is_in(table["lead_id"], value_set=pa.array(sorted(kept)))
                    )
                ids = pc.binary_join_element_wise(table["lead_id"], pa.scalar(suffix), "")
                table = table.set_column(table.schema.get_field_index("lead_id"), "lead_id", ids)
                path = out / f"{name}.parquet"
                if name not in writers:
                    writers[name] = pq.ParquetWriter(path, table.schema, compression="zstd")
                writers[name].write_table(table)
            written += take
    finally:
        for writer in writers.values():
            writer.close()
    return leads_path, touches_path, sales_path, written


def peak_rss(command: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float, int]:
    """Run a command in ``cwd``; wall seconds, peak RSS (MB, sampled), return code."""
    start = time.perf_counter()
    process = subprocess.Popen(
        command, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    peak = 0.0
    handle = psutil.Process(process.pid)
    stderr_chunks: list[bytes] = []
    reader = threading.Thread(
        target=lambda: stderr_chunks.append(process.stderr.read() if process.stderr else b"")
    )
    reader.start()
    while process.poll() is None:
        with contextlib.suppress(psutil.Error):
            peak = max(peak, handle.memory_info().rss / 2**20)
        time.sleep(0.2)
    reader.join()
    if process.returncode:
        sys.stderr.write(b"".join(stderr_chunks).decode()[-3000:])
    return time.perf_counter() - start, peak, process.returncode


def bench_batch(workdir: Path, target: int, reasons_leads: int, rounds: int) -> dict[str, Any]:
    """``leadscore score`` runs alternating with raw ``Booster.predict`` timings on the same
    feature matrix (computed once, not timed); subprocesses run in ``workdir`` with absolute
    paths and the workdir's tracking URI."""
    from models.packaging.loading import load as load_model

    leads_path, touches_path, sales_path, n = tile_inputs(workdir, target)
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{workdir / 'mlflow.db'}"}
    base = [str(BIN / "leadscore"), "score", "--model", str(workdir / "model")]
    events = ["--touches", str(touches_path), "--sales-events", str(sales_path)]
    as_of = ["--as-of", "2025-09-01T00:00:00Z"]
    out: dict[str, Any] = {"leads": n}
    # the feature matrix for raw Booster.predict. The tiled files were written copy by copy,
    # one row group per copy in each file: group g of the leads has its events in group g.
    scorer, _ = load_model(str(workdir / "model"))
    when = pd.Timestamp("2025-09-01", tz="UTC")
    files = [pq.ParquetFile(p) for p in (leads_path, touches_path, sales_path)]
    matrices = []
    for group in range(files[0].num_row_groups):
        chunk, t, s = (f.read_row_group(group).to_pandas() for f in files)
        ids = chunk["lead_id"].astype(str)
        matrices.append(
            scorer.engine.transform(pd.DataFrame({"lead_id": ids, "as_of": when}), chunk, t, s)
        )
    rows = sum(len(X) for X in matrices)

    def predict_seconds() -> float:
        begin = time.perf_counter()
        for X in matrices:
            for model in scorer.models.values():
                model.booster.predict(X, num_iteration=model.best_iteration)
        return time.perf_counter() - begin

    score_command = [
        *base,
        "--input",
        str(leads_path),
        *events,
        *as_of,
        "--output",
        str(workdir / "scores.parquet"),
        "--reasons",
        "0",
    ]
    score_s: list[float] = []
    peaks: list[float] = []
    predict_s: list[float] = []
    ok = True
    for index in range(rounds):
        seconds, peak, code = peak_rss(score_command, env, workdir)
        ok = ok and code == 0
        score_s.append(seconds)
        peaks.append(peak)
        predict_s.append(predict_seconds())
        print(
            f"    round {index + 1}: leadscore score {seconds:.1f} s ({n / seconds:,.0f} rows/s)"
            f"{'' if code == 0 else f' EXIT {code}'}; Booster.predict {predict_s[-1]:.2f} s "
            f"({rows / predict_s[-1]:,.0f} rows/s)",
            flush=True,
        )
    out.update(
        no_reasons_s=median(score_s),
        no_reasons_peak_mb=max(peaks),
        ok=ok,
        predict_rows=rows,
        predict_s=median(predict_s),
    )
    # reasons on a slice (SHAP dominates)
    sliced = workdir / f"batch-{target}" / "slice.parquet"
    leads_file = pq.ParquetFile(leads_path)
    groups: list[int] = []
    rows_so_far = 0
    while rows_so_far < reasons_leads and len(groups) < leads_file.num_row_groups:
        groups.append(len(groups))
        rows_so_far += leads_file.metadata.row_group(groups[-1]).num_rows
    pq.write_table(leads_file.read_row_groups(groups).slice(0, reasons_leads), sliced)
    seconds_r, _, code_r = peak_rss(
        [
            *base,
            "--input",
            str(sliced),
            *events,
            *as_of,
            "--output",
            str(workdir / "scores_r.parquet"),
        ],
        env,
        workdir,
    )
    out.update(reasons_leads=reasons_leads, reasons_s=seconds_r, reasons_ok=code_r == 0)
    # startup of the CLI (imports + model load), to separate it from the per-row rate
    tiny = workdir / f"batch-{target}" / "tiny.parquet"
    pq.write_table(pq.ParquetFile(leads_path).read_row_group(0).slice(0, 10), tiny)
    out["startup_s"], _, _ = peak_rss(
        [
            *base,
            "--input",
            str(tiny),
            *as_of,
            "--output",
            str(workdir / "tiny_out.parquet"),
            "--reasons",
            "0",
        ],
        env,
        workdir,
    )
    return out


# --------------------------------------------------------------------- main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leads", type=int, default=20_000, help="simulated leads to train on")
    parser.add_argument(
        "--batch-leads", type=int, default=1_000_000, help="leads for `leadscore score`"
    )
    parser.add_argument(
        "--reasons-leads", type=int, default=100_000, help="leads scored with reasons"
    )
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds per side")
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds per server round")
    parser.add_argument("--concurrency", type=int, default=16, help="clients for throughput")
    parser.add_argument("--workdir", type=Path, default=None, help="reuse this directory")
    parser.add_argument("--skip-mlflow", action="store_true")
    parser.add_argument("--skip-batch", action="store_true")
    args = parser.parse_args()
    # absolute: the servers and `leadscore score` run with cwd=workdir, and relative paths
    # would otherwise resolve against wherever the bench was started
    workdir = (args.workdir or Path(tempfile.mkdtemp(prefix="bench-serving-"))).resolve()

    print(f"machine: {os.cpu_count()} cores; workdir {workdir}; cwd {Path.cwd()}")
    print(f"[start] {loadavg()}")
    info = build(workdir, args.leads)
    print(
        f"model: {args.leads} simulated leads, trees per target {info['trees']}, "
        f"registered version {info['version']} (built in {info['seconds']} s)"
    )
    from models.packaging.loading import load as load_model

    scorer, _ = load_model(str(workdir / "model"))
    PRIMARY.append(str(scorer.primary))
    del scorer

    bench_servers(workdir, info, args)

    if not args.skip_batch:
        print(f"\n[batch, leadscore score vs raw Booster.predict, interleaved] {loadavg()}")
        batch = bench_batch(workdir, args.batch_leads, args.reasons_leads, args.rounds)
        leads = batch["leads"]
        rate = leads / batch["no_reasons_s"]
        predict_rate = batch["predict_rows"] / batch["predict_s"]
        print(f"  leadscore score on {leads:,} leads (Parquet, with touches and sales events):")
        print(
            f"  no reasons: median {batch['no_reasons_s']:.1f} s wall ({rate:,.0f} rows/s incl. "
            f"{batch['startup_s']:.1f} s start-up), peak RSS {batch['no_reasons_peak_mb']:.0f} MB"
            + ("" if batch["ok"] else "  FAILED (see stderr above)")
        )
        sliced, seconds = batch["reasons_leads"], batch["reasons_s"]
        print(
            f"  with 3 reasons each way, {sliced:,} leads: {seconds:.1f} s "
            f"({sliced / seconds:,.0f} rows/s with the process's start-up, "
            f"{sliced / max(seconds - batch['startup_s'], 1e-9):,.0f} without; goal >= 5,000 "
            f"leads/s on 2 cores: {'met' if sliced / seconds >= 5000 else 'missed'})"
            + ("" if batch["reasons_ok"] else "  FAILED")
        )
        print(
            ratio_line(
                "batch rows/s, no reasons",
                rate,
                "raw Booster.predict (every target, features precomputed)",
                predict_rate,
                "rows/s",
                ">= 0.8x",
            )
        )
        print(f"[end batch] {loadavg()}")
    print(f"[end] {loadavg()}")


if __name__ == "__main__":
    main()
