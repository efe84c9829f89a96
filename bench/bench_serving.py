"""Serving benchmark: the API over HTTP, ``mlflow models serve`` beside it, batch scoring.

    python bench/bench_serving.py [--leads 20000] [--batch-leads 1000000] [--requests 2000]
                                  [--workdir DIR] [--skip-mlflow]

Builds (or reuses, with ``--workdir``) a model the way the pipeline does: simulator data,
features, training with params.yaml, the MLflow bundle, registered as
``lead-scoring@champion`` in a sqlite store. Then prints:

1. ``leadscore serve`` (one uvicorn worker): cold start to ready, worker RSS, and for one lead
   with 30 touches over keep-alive HTTP, p50/p99 latency and requests/s at concurrency 1 and
   16 (one connection per client thread);
2. the same requests against ``mlflow models serve`` on the same registered model (JSON
   ``dataframe_records``), and the ratio;
3. a batch of 1,000 leads over HTTP (``/v1/score/batch``): seconds per request, leads/s;
4. ``leadscore score`` on ``--batch-leads`` leads (the simulated leads tiled with new ids, their
   touches and sales events too), without reasons and with reasons on a slice, rows/s and
   peak RSS, beside raw ``Booster.predict`` (every target) on the same feature matrix.

Client and server share the machine: on 2 cores the client's own CPU shows in the figures.
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

import numpy as np
import pandas as pd
import psutil
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

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
    command: list[str], env: dict[str, str], port: int, ready: str
) -> Iterator[tuple[subprocess.Popen[bytes], float]]:
    """Start a server; yield it and the seconds it took to answer ``ready`` with 200."""
    start = time.perf_counter()
    process = subprocess.Popen(
        command,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        while http_status(port, ready) != 200:
            if process.poll() is not None:
                raise RuntimeError(f"{command[0]} exited with {process.returncode}")
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


def tree_rss(process: subprocess.Popen[bytes]) -> float:
    """MB of the process and its children (uvicorn may exec or fork workers)."""
    root = psutil.Process(process.pid)
    total = 0
    for member in [root, *root.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            total += member.memory_info().rss
    return total / 2**20


# ----------------------------------------------------------------- clients
def latencies(
    port: int, path: str, body: bytes, headers: dict[str, str], n: int, concurrency: int
) -> dict[str, float]:
    """n requests over keep-alive connections, ``concurrency`` client threads."""
    per_thread = max(1, n // concurrency)
    results: list[list[float]] = [[] for _ in range(concurrency)]
    failures = [0] * concurrency
    barrier = threading.Barrier(concurrency + 1)

    def client(slot: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        for _ in range(20):  # warm-up
            connection.request("POST", path, body=body, headers=headers)
            connection.getresponse().read()
        barrier.wait()
        times = results[slot]
        for _ in range(per_thread):
            begin = time.perf_counter()
            connection.request("POST", path, body=body, headers=headers)
            response = connection.getresponse()
            response.read()
            times.append(time.perf_counter() - begin)
            if response.status != 200:
                failures[slot] += 1
        connection.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(concurrency)]
    for thread in threads:
        thread.start()
    barrier.wait()
    start = time.perf_counter()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - start
    flat = np.array([t for times in results for t in times])
    return {
        "p50_ms": float(np.percentile(flat, 50) * 1e3),
        "p99_ms": float(np.percentile(flat, 99) * 1e3),
        "rps": len(flat) / wall,
        "failures": float(sum(failures)),
    }


def show(name: str, figures: dict[str, float]) -> None:
    print(
        f"  {name:<34} p50 {figures['p50_ms']:7.2f} ms   p99 {figures['p99_ms']:7.2f} ms   "
        f"{figures['rps']:8.0f} req/s"
        + (f"   FAILURES {figures['failures']:.0f}" if figures["failures"] else "")
    )


# --------------------------------------------------------------- sections
def bench_api(workdir: Path, info: dict[str, Any], requests: int) -> dict[str, Any]:
    body, _ = one_lead_request(workdir)
    port = free_port()
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": info["store"],
        "LEADSCORE_API_KEYS": f"{KEY}:score",
        "LEADSCORE_MODEL_URI": "models:/lead-scoring@champion",
        "LEADSCORE_PARAMS": str(REPO / "params.yaml"),
        "LEADSCORE_ARTIFACTS": str(workdir / "artifacts"),
    }
    command = [str(BIN / "leadscore"), "serve", "--port", str(port)]
    headers = {"Content-Type": "application/json", "X-API-Key": KEY}
    out: dict[str, Any] = {}
    with running(command, env, port, "/readyz") as (process, cold):
        out["cold_start_s"] = cold
        out["rss_loaded_mb"] = tree_rss(process)
        payload = json.dumps(body).encode()
        out["c1"] = latencies(port, "/v1/score", payload, headers, requests, 1)
        out["c16"] = latencies(port, "/v1/score", payload, headers, requests, 16)
        batch = build_batch(workdir, 1000)
        blob = json.dumps({"leads": batch}).encode()
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
        times = []
        for _ in range(4):
            begin = time.perf_counter()
            connection.request("POST", "/v1/score/batch", body=blob, headers=headers)
            response = connection.getresponse()
            response.read()
            assert response.status == 200, response.status
            times.append(time.perf_counter() - begin)
        out["batch_s"] = statistics.median(times[1:])
        out["batch_mb"] = len(blob) / 2**20
        out["rss_after_mb"] = tree_rss(process)
    return out


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


def bench_mlflow(workdir: Path, info: dict[str, Any], requests: int) -> dict[str, Any] | None:
    if shutil.which("mlflow", path=str(BIN)) is None:
        return None
    _, record = one_lead_request(workdir)
    port = free_port()
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": info["store"],
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    command = [
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
    payload = json.dumps({"dataframe_records": [record]}).encode()
    headers = {"Content-Type": "application/json"}
    out: dict[str, Any] = {}
    with running(command, env, port, "/ping") as (process, cold):
        out["cold_start_s"] = cold
        out["rss_loaded_mb"] = tree_rss(process)
        out["c1"] = latencies(port, "/invocations", payload, headers, requests, 1)
        out["c16"] = latencies(port, "/invocations", payload, headers, requests, 16)
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


def peak_rss(command: list[str], env: dict[str, str]) -> tuple[float, float, int]:
    """Run a command; wall seconds, peak RSS (MB, sampled), return code."""
    start = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
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


def bench_batch(workdir: Path, target: int, reasons_leads: int) -> dict[str, Any]:
    from models.packaging.loading import load

    leads_path, touches_path, sales_path, n = tile_inputs(workdir, target)
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{workdir / 'mlflow.db'}"}
    base = [str(BIN / "leadscore"), "score", "--model", str(workdir / "model")]
    events = ["--touches", str(touches_path), "--sales-events", str(sales_path)]
    as_of = ["--as-of", "2025-09-01T00:00:00Z"]
    out: dict[str, Any] = {"leads": n}
    seconds, peak, code = peak_rss(
        [
            *base,
            "--input",
            str(leads_path),
            *events,
            *as_of,
            "--output",
            str(workdir / "scores.parquet"),
            "--reasons",
            "0",
        ],
        env,
    )
    out.update(no_reasons_s=seconds, no_reasons_peak_mb=peak, ok=code == 0)
    # reasons on a slice (SHAP dominates: about 0.6 ms per lead and core)
    sliced = workdir / f"batch-{target}" / "slice.parquet"
    pq.write_table(pq.ParquetFile(leads_path).read_row_group(0).slice(0, reasons_leads), sliced)
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
    )
    out.update(reasons_leads=reasons_leads, reasons_s=seconds_r, reasons_ok=code_r == 0)
    # raw Booster.predict on the same feature matrix (features computed, not timed). The tiled
    # files were written copy by copy, one row group per copy in each file: group g of the
    # leads has its events in group g of the event files.
    scorer, _ = load(str(workdir / "model"))
    when = pd.Timestamp("2025-09-01", tz="UTC")
    files = [pq.ParquetFile(p) for p in (leads_path, touches_path, sales_path)]
    predict_s, rows = 0.0, 0
    for group in range(files[0].num_row_groups):
        chunk, t, s = (f.read_row_group(group).to_pandas() for f in files)
        ids = chunk["lead_id"].astype(str)
        X = scorer.engine.transform(pd.DataFrame({"lead_id": ids, "as_of": when}), chunk, t, s)
        begin = time.perf_counter()
        for model in scorer.models.values():
            model.booster.predict(X, num_iteration=model.best_iteration)
        predict_s += time.perf_counter() - begin
        rows += len(X)
    out.update(predict_rows=rows, predict_s=predict_s)
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
        "--reasons-leads", type=int, default=20_000, help="leads scored with reasons"
    )
    parser.add_argument("--requests", type=int, default=2000, help="requests per latency run")
    parser.add_argument("--workdir", type=Path, default=None, help="reuse this directory")
    parser.add_argument("--skip-mlflow", action="store_true")
    parser.add_argument("--skip-batch", action="store_true")
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench-serving-"))

    print(f"machine: {os.cpu_count()} cores; workdir {workdir}")
    info = build(workdir, args.leads)
    print(
        f"model: {args.leads} simulated leads, trees per target {info['trees']}, "
        f"registered version {info['version']} (built in {info['seconds']} s)"
    )

    api = bench_api(workdir, info, args.requests)
    print("\nleadscore serve (1 uvicorn worker), one lead with 30 touches, keep-alive:")
    cold, loaded, after = api["cold_start_s"], api["rss_loaded_mb"], api["rss_after_mb"]
    print(f"  cold start to ready {cold:.2f} s; RSS {loaded:.0f} MB loaded, {after:.0f} MB after")
    show("concurrency 1", api["c1"])
    show("concurrency 16", api["c16"])
    seconds, megabytes = api["batch_s"], api["batch_mb"]
    print(
        f"  batch of 1,000 leads ({megabytes:.1f} MB JSON): {seconds:.2f} s per request, "
        f"{1000 / seconds:.0f} leads/s"
    )

    if not args.skip_mlflow:
        flow = bench_mlflow(workdir, info, args.requests)
        if flow is None:
            print("\nmlflow models serve: not available")
        else:
            print("\nmlflow models serve (same registered model, --env-manager local):")
            cold, loaded = flow["cold_start_s"], flow["rss_loaded_mb"]
            print(f"  cold start to ready {cold:.2f} s; RSS {loaded:.0f} MB")
            show("concurrency 1", flow["c1"])
            show("concurrency 16", flow["c16"])
            p50 = api["c1"]["p50_ms"] / flow["c1"]["p50_ms"]
            rps = api["c16"]["rps"] / flow["c16"]["rps"]
            print(f"  ratio leadscore / mlflow: p50 {p50:.2f}x, req/s at concurrency 16 {rps:.2f}x")

    if not args.skip_batch:
        batch = bench_batch(workdir, args.batch_leads, args.reasons_leads)
        leads = batch["leads"]
        rate = leads / batch["no_reasons_s"]
        predict_rate = batch["predict_rows"] / batch["predict_s"]
        print(f"\nleadscore score on {leads:,} leads (Parquet, with touches and sales events):")
        print(
            f"  no reasons: {batch['no_reasons_s']:.1f} s wall ({rate:,.0f} rows/s incl. "
            f"{batch['startup_s']:.1f} s start-up), peak RSS {batch['no_reasons_peak_mb']:.0f} MB"
        )
        sliced, seconds = batch["reasons_leads"], batch["reasons_s"]
        print(
            f"  with 3 reasons each way, {sliced:,} leads: {seconds:.1f} s "
            f"({sliced / seconds:,.0f} rows/s)"
        )
        print(
            f"  raw Booster.predict (every target) on the same feature matrix: "
            f"{predict_rate:,.0f} rows/s; leadscore score / predict = {rate / predict_rate:.3f}"
        )


if __name__ == "__main__":
    main()
