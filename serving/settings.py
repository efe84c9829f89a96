"""Runtime settings of the API, from the environment (pydantic-settings).

- ``LEADSCORE_MODEL_URI`` (default ``models:/lead-scoring@champion``): the model to serve, a
  registry URI, ``runs:/…`` or a directory (model bundle, or a train output with scorer.pkl);
- ``MLFLOW_TRACKING_URI`` (default ``sqlite:///mlflow.db``): where registry URIs are looked up;
- ``LEADSCORE_API_KEYS``: comma-separated ``key:role`` pairs; roles ``score`` and ``admin``;
- ``LEADSCORE_AUTH`` (``on``): ``off`` only for local demos, every caller is then admin (a loud
  warning at start-up);
- ``LEADSCORE_ARTIFACTS`` (``artifacts``): the evaluate/queue outputs the dashboard shows;
- ``LEADSCORE_PARAMS`` (``params.yaml``): where the default request limits (``serving``) are;
- ``LEADSCORE_<KEY>`` for any key of params.yaml's ``serving`` section (``LEADSCORE_MAX_BATCH``,
  ``LEADSCORE_SCORING_QUEUE``, ``LEADSCORE_RATE_LIMIT_PER_MINUTE``…): override that limit;
- ``LEADSCORE_REASONS`` (``3``): positive and negative reasons per lead;
- ``LEADSCORE_VALIDATED`` (``data/validated``): the validated tables lead pages read timelines
  from;
- ``LEADSCORE_STORE_URL`` (default ``sqlite:///scores.db`` in the working directory, beside
  ``mlflow.db``; ``off``: nothing recorded): the score store (scores given, sales' feedback);
- ``LEADSCORE_MODEL_CACHE`` (default ``.leadscore/models`` in the working directory; ``off``:
  none): where registered bundles are kept once fetched (:mod:`models.packaging.cache`).

The keys are held as a :class:`~pydantic.SecretStr` (never printed, never logged); only their
SHA-256 digests are kept by the authenticator.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from features.errors import UserError
from features.params import Params, ServingParams, load_params
from models.packaging.tracking import MODELS_URI

logger = logging.getLogger(__name__)

ROLES: tuple[str, ...] = ("score", "admin")
"""Roles in increasing power: ``admin`` may do everything ``score`` may."""
DEFAULT_MODEL_URI = "models:/lead-scoring@champion"
DEFAULT_MODEL_CACHE = ".leadscore/models"
MIN_KEY_LENGTH = 16
"""Shorter API keys are refused: a key is the only thing between a caller and the scores."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="LEADSCORE_",
        extra="ignore",
        frozen=True,
        populate_by_name=True,
        protected_namespaces=(),
    )

    model_uri: str = DEFAULT_MODEL_URI
    tracking_uri: str | None = Field(
        default=None,
        validation_alias=AliasChoices("MLFLOW_TRACKING_URI", "tracking_uri"),
    )
    api_keys: SecretStr = SecretStr("")
    auth: Literal["on", "off"] = "on"
    artifacts: Path = Path("artifacts")
    validated: Path = Path("data/validated")
    store_url: str = ""
    model_cache: str = DEFAULT_MODEL_CACHE
    """Where registered bundles are kept once fetched; ``off``: no cache."""
    params: Path = Path("params.yaml")
    max_batch: Annotated[int | None, Field(ge=1)] = None
    max_body_bytes: Annotated[int | None, Field(ge=1024)] = None
    max_events_per_lead: Annotated[int | None, Field(ge=1)] = None
    max_events_per_request: Annotated[int | None, Field(ge=1)] = None
    scoring_threads: Annotated[int | None, Field(ge=1, le=64)] = None
    scoring_queue: Annotated[int | None, Field(ge=0)] = None
    request_timeout_seconds: Annotated[float | None, Field(gt=0)] = None
    rate_limit_per_minute: Annotated[int | None, Field(ge=0)] = None
    max_connections: Annotated[int | None, Field(ge=1)] = None
    keep_alive_seconds: Annotated[float | None, Field(gt=0)] = None
    header_timeout_seconds: Annotated[float | None, Field(gt=0)] = None
    max_header_bytes: Annotated[int | None, Field(ge=1024)] = None
    max_headers: Annotated[int | None, Field(ge=8)] = None
    reasons: Annotated[int, Field(ge=0, le=20)] = 3
    reload_paths: str = ""
    """Directories ``POST /v1/admin/reload`` may load a model from, beside the configured one
    (``LEADSCORE_RELOAD_PATHS``, separated by ``:``); see :meth:`reload_refusal`."""
    load_model: bool = True
    """False: start without loading (tests of the no-model path)."""

    @field_validator("auth", mode="before")
    @classmethod
    def _auth_words(cls, value: object) -> object:
        if isinstance(value, str):
            word = value.strip().lower()
            return {"false": "off", "0": "off", "no": "off", "true": "on", "1": "on"}.get(
                word, word
            )
        return value

    def key_roles(self) -> dict[str, str]:
        """``{key: role}`` from ``LEADSCORE_API_KEYS``; a malformed entry is a UserError that
        names its position, never the key."""
        out: dict[str, str] = {}
        text = self.api_keys.get_secret_value()
        for position, entry in enumerate(text.split(","), start=1):
            entry = entry.strip()
            if not entry:
                continue
            key, sep, role = entry.rpartition(":")
            key, role = key.strip(), role.strip().lower()
            if not sep or not key:
                raise UserError(
                    f"LEADSCORE_API_KEYS: entry {position} is not 'key:role' "
                    f"(roles: {', '.join(ROLES)})"
                )
            if role not in ROLES:
                raise UserError(
                    f"LEADSCORE_API_KEYS: entry {position} has role {role!r}; "
                    f"roles are {', '.join(ROLES)}"
                )
            if len(key) < MIN_KEY_LENGTH:
                raise UserError(
                    f"LEADSCORE_API_KEYS: entry {position}'s key is shorter than "
                    f'{MIN_KEY_LENGTH} characters (e.g. `python -c "import secrets; '
                    f'print(secrets.token_urlsafe(24))"`)'
                )
            out[key] = role
        return out

    def reload_refusal(self, uri: str) -> str | None:
        """Why an admin reload may not load ``uri`` (None: it may). A reload loads only the
        configured model's registered versions (``models:/<its name>@<alias>`` or
        ``models:/<its name>/<version>``) or a directory inside the configured model directory
        or one of ``reload_paths``; anything else would unpickle whatever lies there."""
        configured = MODELS_URI.match(self.model_uri)
        if uri.startswith("models:/"):
            match = MODELS_URI.match(uri)
            if match is None:
                return "expected models:/<name>@<alias> or models:/<name>/<version>"
            if configured is None or match["name"] != configured["name"]:
                allowed = configured["name"] if configured else "none: the model is a directory"
                return f"only the configured model's versions may be loaded (name: {allowed})"
            return None
        if ":/" in uri:
            return "only models:/ URIs of the configured model or allowed directories"
        roots = [Path(p) for p in self.reload_paths.split(os.pathsep) if p.strip()]
        if configured is None:
            roots.append(Path(self.model_uri))
        target = Path(uri).resolve()
        if any(target.is_relative_to(root.resolve()) for root in roots):
            return None
        return "not a directory the server may load from (LEADSCORE_RELOAD_PATHS)"

    def limits(self) -> ServingParams:
        """Request limits: params.yaml's ``serving`` section, each overridable here."""
        base = self._params().serving if self.params.exists() else ServingParams()
        overrides = {
            name: getattr(self, name)
            for name in ServingParams.model_fields
            if getattr(self, name) is not None
        }
        return base.model_copy(update=overrides)

    def targets(self) -> tuple[str, ...]:
        """Targets named in params (for the documented response shape); the served model's
        own targets are what the answers carry."""
        params = self._params() if self.params.exists() else Params()
        return tuple(params.targets)

    def model_cache_dir(self) -> Path | None:
        """``LEADSCORE_MODEL_CACHE`` as a directory; None when ``off`` (or empty)."""
        text = self.model_cache.strip()
        return None if text.lower() in ("", "off") else Path(text)

    def store_environ(self) -> dict[str, str]:
        """``LEADSCORE_STORE_URL`` as :func:`models.store.open_store` reads it."""
        return {"LEADSCORE_STORE_URL": self.store_url} if self.store_url.strip() else {}

    def params_or_defaults(self) -> Params:
        return self._params() if self.params.exists() else Params()

    def _params(self) -> Params:
        return load_params(self.params)


_DEFAULTS = ServingParams()


@dataclass(frozen=True)
class Limits:
    """The API's limits in force (:class:`~features.params.ServingParams` after overrides)."""

    max_batch: int = _DEFAULTS.max_batch
    max_body_bytes: int = _DEFAULTS.max_body_bytes
    max_events_per_lead: int = _DEFAULTS.max_events_per_lead
    max_events_per_request: int = _DEFAULTS.max_events_per_request
    scoring_threads: int = _DEFAULTS.scoring_threads
    scoring_queue: int = _DEFAULTS.scoring_queue
    request_timeout_seconds: float = _DEFAULTS.request_timeout_seconds
    rate_limit_per_minute: int = _DEFAULTS.rate_limit_per_minute
    max_connections: int = _DEFAULTS.max_connections
    keep_alive_seconds: float = _DEFAULTS.keep_alive_seconds
    header_timeout_seconds: float = _DEFAULTS.header_timeout_seconds
    max_header_bytes: int = _DEFAULTS.max_header_bytes
    max_headers: int = _DEFAULTS.max_headers

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        return cls(**settings.limits().model_dump())
