"""The registration run shows the new model's evaluation as images (``evaluation/*.png``), as
``mlflow.evaluate`` would: real PNGs of the primary target's test slice, on a real sqlite store."""

from __future__ import annotations

import struct
from pathlib import Path

import matplotlib.image
import mlflow.artifacts
import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from features.params import load_params
from models.packaging.registry import EVALUATION_DIR, RunInputs, register
from models.reports.plots import PLOTS, write_plots
from tests.serving.world import World, fast

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MIN_BYTES = 10_000  # a 640×480 figure with axes, curves and text is well above this


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, world: World) -> tuple[str, str]:
    """(tracking URI, run id) of the session's model registered in a fresh store."""
    root = tmp_path_factory.mktemp("run-artifacts")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    tables = world.tables
    params = fast(load_params(world.params_path))
    record = register(RunInputs(world.bundle, params, world.snapshots, lambda: tables), uri=uri)
    return uri, str(record["run_id"])


def _png_size(data: bytes) -> tuple[int, int]:
    """Width and height from the IHDR chunk, which a PNG must start with."""
    assert data[:8] == PNG_SIGNATURE
    length, kind = struct.unpack(">I4s", data[8:16])
    assert kind == b"IHDR"
    assert length == 13
    width, height = struct.unpack(">II", data[16:24])
    return int(width), int(height)


def _check_png(path: Path) -> None:
    data = path.read_bytes()
    assert len(data) > MIN_BYTES, (path.name, len(data))
    assert _png_size(data) == (640, 480)
    pixels = matplotlib.image.imread(path)  # decodes every chunk: a truncated file fails
    assert pixels.shape[:2] == (480, 640)
    assert float(np.std(pixels[..., :3])) > 0.05  # curves and text, not a blank canvas


def test_the_run_holds_the_evaluation_images(run: tuple[str, str], tmp_path: Path) -> None:
    uri, run_id = run
    listed = MlflowClient(uri).list_artifacts(run_id, EVALUATION_DIR)
    assert sorted(Path(item.path).name for item in listed) == sorted(f"{s}.png" for s in PLOTS)
    assert all((item.file_size or 0) > MIN_BYTES for item in listed)
    local = Path(
        mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path=EVALUATION_DIR, dst_path=str(tmp_path), tracking_uri=uri
        )
    )
    for stem in PLOTS:
        _check_png(local / f"{stem}.png")


def test_one_class_draws_the_calibration_curve_only(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    written = write_plots(np.zeros(50), rng.uniform(size=50), tmp_path, "converted")
    assert [path.name for path in written] == ["calibration_curve.png"]
    _check_png(written[0])


def test_no_rows_draw_nothing(tmp_path: Path) -> None:
    assert write_plots(np.zeros(0), np.zeros(0), tmp_path / "none", "converted") == []
    assert not (tmp_path / "none").exists()


def test_plots_leave_pyplot_alone(tmp_path: Path) -> None:
    """The object API: no pyplot figure is left open (a long-running process would grow)."""
    rng = np.random.default_rng(1)
    y = (rng.uniform(size=400) < 0.2).astype(float)
    write_plots(y, np.clip(y * 0.3 + rng.uniform(size=400) * 0.6, 0, 1), tmp_path, "converted")
    import matplotlib.pyplot as plt

    assert plt.get_fignums() == []
