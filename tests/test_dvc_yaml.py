"""dvc.yaml lists, for each stage, its script and every project module the script imports
(directly or not), so that a code change re-runs exactly the stages it can affect."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
PACKAGES = {"features", "models", "pipelines", "serving"}
PIPELINE = yaml.safe_load((REPO / "dvc.yaml").read_text())
# `leadscore <command>` → the stage module that runs it.
MODULE_OF_COMMAND: dict[str, str] = {}


def _module_file(module: str) -> Path:
    return REPO / (module.replace(".", "/") + ".py")


def import_closure(module: str, seen: set[str] | None = None) -> set[str]:
    """Project modules ``module`` imports, transitively (imports inside functions count)."""
    seen = set() if seen is None else seen
    path = _module_file(module)
    if module in seen or not path.exists():
        return seen
    seen.add(module)
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module.split(".")[0] in PACKAGES:
                import_closure(node.module, seen)
                for alias in node.names:
                    import_closure(f"{node.module}.{alias.name}", seen)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in PACKAGES:
                    import_closure(alias.name, seen)
    return seen


@pytest.mark.parametrize("stage", list(PIPELINE["stages"]))
def test_stage_deps_cover_the_code_it_runs(stage: str) -> None:
    definition = PIPELINE["stages"][stage]
    command = definition["cmd"].split()[1]
    module = f"pipelines.{MODULE_OF_COMMAND.get(command, command)}"
    assert _module_file(module).exists(), module
    needed = {str(_module_file(m).relative_to(REPO)) for m in import_closure(module)}
    missing = needed - set(definition["deps"])
    assert not missing, f"stage {stage} does not list {sorted(missing)}"


def test_every_stage_reads_params_by_key() -> None:
    for name, stage in PIPELINE["stages"].items():
        assert stage.get("params"), f"stage {name} lists no params keys"
