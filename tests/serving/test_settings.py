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
    monkeypatch.setenv("LEADSCORE_API_KEYS", "abcdefghijklmnop:score, def-0123456789ab:ADMIN ,")
    monkeypatch.setenv("LEADSCORE_AUTH", "OFF")
    monkeypatch.setenv("LEADSCORE_ARTIFACTS", "/tmp/arts")
    settings = Settings()
    assert settings.model_uri == "models:/x@champion"
    assert settings.tracking_uri == "sqlite:///elsewhere.db"
    assert settings.key_roles() == {"abcdefghijklmnop": "score", "def-0123456789ab": "admin"}
    assert settings.auth == "off"
    assert settings.artifacts == Path("/tmp/arts")
    assert "abcdefghijklmnop" not in repr(settings)
    assert "def:" not in str(settings.api_keys)


@pytest.mark.parametrize(
    "entry", ["justakey", "k-0123456789abcdef:superuser", ":score", "short-key:score"]
)
def test_bad_key_entries_name_the_position_not_the_key(entry: str) -> None:
    with pytest.raises(UserError, match="entry 2") as error:
        Settings(api_keys=SecretStr(f"good-key-0123456789:score,{entry}")).key_roles()
    secret = entry.split(":")[0]
    assert not secret or secret not in str(error.value)


def test_keys_shorter_than_16_characters_are_refused() -> None:
    with pytest.raises(UserError, match="shorter than 16 characters"):
        Settings(api_keys=SecretStr("fifteen-chars-k:admin")).key_roles()
    assert Settings(api_keys=SecretStr("sixteen-chars-ky:admin")).key_roles()


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
