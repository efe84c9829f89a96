"""Settings from the environment; API keys parsed and never shown."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from features.errors import UserError
from serving.dependencies import Authenticator
from serving.settings import Limits, Settings

REPO = Path(__file__).resolve().parents[2]


def test_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEADSCORE_MODEL_URI", "models:/x@champion")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///elsewhere.db")
    monkeypatch.setenv("LEADSCORE_API_KEYS", "abc:score, def:ADMIN ,")
    monkeypatch.setenv("LEADSCORE_AUTH", "OFF")
    monkeypatch.setenv("LEADSCORE_ARTIFACTS", "/tmp/arts")
    settings = Settings()
    assert settings.model_uri == "models:/x@champion"
    assert settings.tracking_uri == "sqlite:///elsewhere.db"
    assert settings.key_roles() == {"abc": "score", "def": "admin"}
    assert settings.auth == "off"
    assert settings.artifacts == Path("/tmp/arts")
    assert "abc" not in repr(settings)
    assert "def:" not in str(settings.api_keys)


@pytest.mark.parametrize("entry", ["justakey", "k:superuser", ":score"])
def test_bad_key_entries_name_the_position_not_the_key(entry: str) -> None:
    with pytest.raises(UserError, match="entry 2") as error:
        Settings(api_keys=SecretStr(f"good:score,{entry}")).key_roles()
    assert "justakey" not in str(error.value)


def test_limits_come_from_params_and_can_be_overridden() -> None:
    settings = Settings(params=REPO / "params.yaml")
    limits = Limits.from_settings(settings)
    assert limits == Limits(1000, 5_000_000, 5000)
    assert Limits.from_settings(Settings(params=REPO / "params.yaml", max_batch=7)).max_batch == 7
    assert Limits.from_settings(Settings(params=REPO / "missing.yaml")).max_batch == 1000


def test_authenticator() -> None:
    auth = Authenticator({"s-key": "score", "a-key": "admin"})
    assert auth.identify("s-key").role == "score"  # type: ignore[union-attr]
    assert auth.identify("a-key").role == "admin"  # type: ignore[union-attr]
    assert auth.identify("nope") is None
    assert auth.identify(None) is None
    assert auth.identify("") is None
    caller = auth.identify("s-key")
    assert caller is not None
    assert "s-key" not in caller.key_id
    off = Authenticator({}, enabled=False)
    assert off.identify(None).role == "admin"  # type: ignore[union-attr]
