"""A flat mapping's ``labels``: readable words for its columns, checked against the declared
columns and carried into the import manifest under the names the columns are written as."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from features.errors import UserError
from features.ingest.importers import import_export
from features.ingest.mapping import FlatMapping, load_mapping

MAPPING = """
format: flat
order: file
outcome:
  converted: {column: y, positive: ["yes"]}
categorical: [Country, job]
numeric: [nr.employed, age]
labels:
  nr.employed: employed in the economy (thousands)
  age: client's age
  Country: country of the client
"""


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def test_labels_reach_the_manifest_under_the_written_names(tmp_path: Path) -> None:
    mapping = write(tmp_path / "m.yaml", MAPPING)
    export = write(
        tmp_path / "export.csv",
        "Country,job,nr.employed,age,y\nPT,admin,5191,41,no\nES,services,5099,35,yes\n",
    )
    import_export(mapping, export, tmp_path / "raw")
    manifest = json.loads((tmp_path / "raw" / "import.json").read_text())
    assert manifest["labels"] == {
        "nr.employed": "employed in the economy (thousands)",
        "age": "client's age",
        "country": "country of the client",  # `Country` is written as the canonical `country`
    }


def test_no_labels_is_an_empty_map(tmp_path: Path) -> None:
    mapping = load_mapping(write(tmp_path / "m.yaml", MAPPING.split("labels:")[0]))
    assert isinstance(mapping, FlatMapping)
    assert mapping.written_labels() == {}


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        ("labels: {duration: call length}\n", "labels: 'duration' is not a declared"),
        ("labels: {age: '  '}\n", "labels.age"),
    ],
)
def test_bad_labels_are_one_line(tmp_path: Path, labels: str, message: str) -> None:
    path = write(tmp_path / "m.yaml", MAPPING.split("labels:")[0] + labels)
    with pytest.raises(UserError) as error:
        load_mapping(path)
    assert "\n" not in str(error.value)
    assert message in str(error.value)


def test_engagement_columns_reach_the_manifest_under_the_written_names(tmp_path: Path) -> None:
    mapping = write(tmp_path / "m.yaml", MAPPING + "engagement: [age, Country]\n")
    export = write(tmp_path / "export.csv", "Country,job,nr.employed,age,y\nPT,admin,5191,41,no\n")
    import_export(mapping, export, tmp_path / "raw")
    manifest = json.loads((tmp_path / "raw" / "import.json").read_text())
    assert manifest["engagement"] == ["age", "country"]


def test_engagement_must_name_declared_columns(tmp_path: Path) -> None:
    path = write(tmp_path / "m.yaml", MAPPING + "engagement: duration\n")
    with pytest.raises(UserError) as error:
        load_mapping(path)
    assert "\n" not in str(error.value)
    assert "engagement: 'duration' is not a declared" in str(error.value)
