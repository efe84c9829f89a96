"""A real ``leadscore serve`` under a load of single-lead requests, stopped with SIGTERM: every
score it acknowledged (answered 200) is in the score store afterwards."""

from __future__ import annotations

import datetime as dt
import signal
import threading
import time
from pathlib import Path

import httpx
import pandas as pd

from models.store import ScoreStore
from tests.integration.test_api_server import KEYS, start_server
from tests.serving.world import World, open_lead_ids, request_for

CLIENTS = 8


def test_sigterm_under_load_loses_no_acknowledged_score(world: World, tmp_path: Path) -> None:
    as_of = pd.Timestamp("2025-03-01", tz="UTC")
    bodies = [
        request_for(world.tables, lead, as_of)
        for lead in open_lead_ids(world.tables, 20, seed=11, created_before=as_of)
    ]
    url = f"sqlite:///{tmp_path / 'scores.db'}"
    acknowledged: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def client(base: str, offset: int) -> None:
        with httpx.Client(base_url=base, headers={"X-API-Key": KEYS["score"]}) as http:
            i = offset
            while not stop.is_set():
                try:
                    answer = http.post("/v1/score", json=bodies[i % len(bodies)], timeout=10)
                except httpx.TransportError:
                    return  # the server is going away
                if answer.status_code == 200:
                    with lock:
                        acknowledged.append(answer.json()["lead_id"])
                i += 1

    with start_server(world, tmp_path, LEADSCORE_STORE_URL=url) as server:
        threads = [threading.Thread(target=client, args=(server.base, k)) for k in range(CLIENTS)]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 30
        while len(acknowledged) < 300 and time.monotonic() < deadline:
            time.sleep(0.05)
        server.process.send_signal(signal.SIGTERM)  # mid-load
        server.process.wait(timeout=30)
        stop.set()
        for thread in threads:
            thread.join(timeout=15)
        assert server.process.returncode is not None
        assert "Application shutdown complete" in server.log.read_text()
    assert len(acknowledged) >= 300
    with ScoreStore(url) as store:
        stored = store.scores_between(
            dt.datetime(2000, 1, 1, tzinfo=dt.UTC), dt.datetime(2100, 1, 1, tzinfo=dt.UTC)
        )
    # every acknowledged score is stored (a request answered while the client gave up counts
    # on the server's side only, so the store may hold a few more)
    assert len(stored) >= len(acknowledged)
    counts = stored["lead_id"].value_counts()
    for lead, times in pd.Series(acknowledged).value_counts().items():
        assert counts.get(lead, 0) >= times, lead
    assert set(stored["source"]) == {"api"}
