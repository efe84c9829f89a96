"""The score store's cost on the API: ``POST /v1/score`` throughput with recording off
(``LEADSCORE_STORE_URL=off``, the peer) and on (a SQLite file; ``--postgres URL`` adds a
PostgreSQL server), in interleaved rounds on one running server each, and the rate of
``leadscore rescore`` (open leads scored, stored and written back per second).

    python bench/bench_recording.py [--seconds 15] [--rounds 3] [--concurrency 8] \\
        [--leads 20000] [--workdir DIR] [--postgres postgresql+psycopg://…]

Builds (or reuses) the registered model of ``bench/bench_serving.py``. Goal (issue 12):
recording costs at most 10 % of the throughput. Loopback only: on 2 cores the client shares
the machine, so both sides are measured the same way in alternating rounds.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_load import hold
from bench_serving import BIN, KEY, build, free_port, one_lead_request, running


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--leads", type=int, default=20_000)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--postgres", default=None, help="a PostgreSQL URL to measure too")
    parser.add_argument(
        "--rescore-tables",
        type=Path,
        default=None,
        help="canonical tables to time `leadscore rescore` on instead (e.g. the 1M leads of "
        "bench_batch.py's workdir), with --rescore-model",
    )
    parser.add_argument("--rescore-model", default=None, help="a bundle directory")
    parser.add_argument(
        "--all-open",
        action="store_true",
        help="rescore a copy of --rescore-tables whose closing sales events (won, lost, "
        "rejected) are removed, so that every lead is open at the horizon",
    )
    parser.add_argument("--skip-api", action="store_true", help="only time the rescoring")
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="leadscore-bench-recording-"))
    info = build(workdir, args.leads)
    body = json.dumps(one_lead_request(workdir)[0]).encode()
    base = {
        **os.environ,
        "LEADSCORE_API_KEYS": f"{KEY}:admin",
        "MLFLOW_TRACKING_URI": info["store"],
        "LEADSCORE_ARTIFACTS": str(workdir / "artifacts"),
        "OMP_NUM_THREADS": "1",
    }
    stores = {"off (peer)": "off", "sqlite": f"sqlite:///{workdir / 'scores.db'}"}
    if args.postgres:
        stores["postgresql"] = args.postgres
    print(
        f"bench_recording: POST /v1/score, one lead with 30 touches, c={args.concurrency}, "
        f"{args.rounds} interleaved rounds of {args.seconds:.0f} s, {os.cpu_count()} cores"
    )
    results: dict[str, list[dict[str, float]]] = {name: [] for name in stores}
    if args.skip_api:
        results = {}
    with contextlib.ExitStack() as servers:
        ports = {}
        for name, url in stores.items() if results else ():
            port = free_port()
            command = [str(BIN / "leadscore"), "serve", "--port", str(port)]
            servers.enter_context(
                running(command, {**base, "LEADSCORE_STORE_URL": url}, port, "/readyz")
            )
            ports[name] = port
        for _ in range(args.rounds if results else 0):
            for name, port in ports.items():
                results[name].append(
                    hold(port, "POST", "/v1/score", body, args.seconds, args.concurrency)
                )
    peer = float(np.median([r["rps"] for r in results["off (peer)"]])) if results else 1.0
    for name, rounds in results.items():
        rps = float(np.median([r["rps"] for r in rounds]))
        p50 = float(np.median([r["p50_ms"] for r in rounds]))
        p99 = float(np.median([r["p99_ms"] for r in rounds]))
        failed = sum(r["failed"] for r in rounds)
        print(
            f"  recording {name:<12} {rps:7.1f} req/s (median of {len(rounds)})  p50 {p50:6.2f} ms"
            f"  p99 {p99:7.2f} ms  failed {failed:.0f}  {rps / peer:6.3f}× the peer"
        )

    # rescoring: every open lead at the horizon, stored and written back
    validated = args.rescore_tables or workdir / "raw"
    if args.all_open:
        validated = all_open_copy(validated, workdir / f"all-open-{validated.name}")
    model = ["--model", args.rescore_model] if args.rescore_model else []
    store = workdir / "rescore-scores.db"
    store.unlink(missing_ok=True)
    env = {**base, "LEADSCORE_STORE_URL": f"sqlite:///{store}"}
    start = time.perf_counter()
    subprocess.run(
        [
            str(BIN / "leadscore"),
            "rescore",
            "--validated",
            str(validated),
            *model,
            "--out",
            str(workdir / "crm_scores.csv"),
            "--tracking-uri",
            info["store"],
        ],
        env=env,
        check=True,
        capture_output=True,
    )
    seconds = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    rows = sum(1 for _ in (workdir / "crm_scores.csv").open()) - 1
    print(
        f"  leadscore rescore on {validated}: {rows:,} open leads scored with reasons, stored "
        f"(SQLite) and written in {seconds:.1f} s: {rows / seconds:,.0f} leads/s, process start "
        f"included, peak RSS {peak_mb:,.0f} MB (peer: bench_batch.py's `leadscore score` with "
        f"3 reasons, same cores)"
    )


def all_open_copy(tables: Path, out: Path) -> Path:
    """``tables`` with every closing sales event removed (made once): the same leads, touches
    and pipeline, but every lead still open at the horizon, as a CRM of only open leads."""
    import pandas as pd

    from features import contract

    if (out / "sales_events.parquet").exists():
        return out
    out.mkdir(parents=True, exist_ok=True)
    for source in tables.glob("*.parquet"):
        if source.name != "sales_events.parquet":
            (out / source.name).symlink_to(source.resolve())
    sales = pd.read_parquet(tables / "sales_events.parquet")
    closing = sales["stage"].astype(str).str.strip().str.lower().isin(contract.CLOSED_STAGES)
    sales[~closing.to_numpy()].to_parquet(out / "sales_events.parquet", index=False)
    return out


if __name__ == "__main__":
    main()
