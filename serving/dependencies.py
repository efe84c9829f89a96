"""Typed dependencies: everything a handler needs reaches it through ``Annotated`` aliases.

App-wide objects live on ``app.state`` (made by :func:`serving.app.create_app`, never at import
time): ``settings``, ``holder`` (the served model), ``api_models`` (request/response models),
``auth``, ``metrics`` (on its ``metrics_registry``), ``artifacts``.

**Auth.** ``X-API-Key`` header; keys and roles from ``LEADSCORE_API_KEYS`` (``key:role,…``).
Only SHA-256 digests of the keys are kept, compared with :func:`hmac.compare_digest` against
every known key (no early exit). Roles: ``score`` (scoring, queue, model, dashboard data) and
``admin`` (also reload). No key or an unknown key → 401; a key whose role is too weak → 403.
``LEADSCORE_AUTH=off`` makes every caller admin (local demos; a warning at start-up).
After auth, each key's requests are rate-limited (429; :class:`~serving.admission.RateLimiter`).

**Bodies.** A request body is read (within the size limit enforced by the body-limit
middleware) and validated by the app's generated model straight from the JSON bytes; errors
become the usual 422 with field-level locations under ``body``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.security import APIKeyHeader
from pydantic import BaseModel, ValidationError

from features.params import FeedbackParams
from models.store import Store
from serving.admission import Admission, RateLimiter, Ticket
from serving.artifacts import ArtifactStore
from serving.coordination import Follower
from serving.holder import LoadedModel, ModelHolder
from serving.metrics import ApiMetrics
from serving.recording import ScoreKeeper
from serving.schemas import ApiModels, BatchRequestBase, QueueRequestBase, ScoreRequestBase
from serving.settings import ROLES, Limits, Settings

API_KEY_HEADER = "X-API-Key"


# ------------------------------------------------------------------ app state
async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_holder(request: Request) -> ModelHolder:
    holder: ModelHolder = request.app.state.holder
    return holder


async def get_metrics(request: Request) -> ApiMetrics:
    metrics: ApiMetrics = request.app.state.metrics
    return metrics


async def get_artifacts(request: Request) -> ArtifactStore:
    store: ArtifactStore = request.app.state.artifacts
    return store


async def get_api_models(request: Request) -> ApiModels:
    models: ApiModels = request.app.state.api_models
    return models


async def get_feedback_params(request: Request) -> FeedbackParams:
    params: FeedbackParams = request.app.state.feedback
    return params


async def get_keeper(request: Request) -> ScoreKeeper:
    keeper: ScoreKeeper = request.app.state.keeper
    return keeper


async def get_store(keeper: Annotated[ScoreKeeper, Depends(get_keeper)]) -> Store:
    return keeper.store


async def get_follower(request: Request) -> Follower | None:
    follower: Follower | None = request.app.state.follower
    return follower


SettingsDep = Annotated[Settings, Depends(get_settings)]
FollowerDep = Annotated[Follower | None, Depends(get_follower)]
HolderDep = Annotated[ModelHolder, Depends(get_holder)]
MetricsDep = Annotated[ApiMetrics, Depends(get_metrics)]
ArtifactsDep = Annotated[ArtifactStore, Depends(get_artifacts)]
StoreDep = Annotated[Store, Depends(get_store)]
KeeperDep = Annotated[ScoreKeeper, Depends(get_keeper)]
FeedbackDep = Annotated[FeedbackParams, Depends(get_feedback_params)]
"""params.yaml's ``feedback`` vocabularies, read once when the app is made."""
ApiModelsDep = Annotated[ApiModels, Depends(get_api_models)]


async def get_model(holder: HolderDep) -> LoadedModel:
    """The model serving now (one reference for the whole request); 503 if none."""
    model = holder.current
    if model is None:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            "no model loaded" + (f": {holder.public_error}" if holder.last_error else ""),
            headers={"Retry-After": "10"},
        )
    return model


async def get_optional_model(holder: HolderDep) -> LoadedModel | None:
    return holder.current


ModelDep = Annotated[LoadedModel, Depends(get_model)]
OptionalModelDep = Annotated[LoadedModel | None, Depends(get_optional_model)]


# ----------------------------------------------------------------------- auth
def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


@dataclass(frozen=True)
class Caller:
    role: str
    key_id: str
    """First hex digits of the key's SHA-256: names a key in logs without revealing it."""


class Authenticator:
    def __init__(self, keys: Mapping[str, str], enabled: bool = True) -> None:
        self.enabled = enabled
        self._keys = [(_digest(key), role) for key, role in keys.items()]

    @property
    def key_count(self) -> int:
        return len(self._keys)

    def identify(self, key: str | None) -> Caller | None:
        if not self.enabled:
            return Caller("admin", "auth-off")
        if not key:
            return None
        presented = _digest(key)
        found: str | None = None
        for digest, role in self._keys:  # every key compared: timing does not tell which
            if hmac.compare_digest(presented, digest):
                found = role
        return Caller(found, presented.hex()[:8]) if found else None


async def get_auth(request: Request) -> Authenticator:
    auth: Authenticator = request.app.state.auth
    return auth


async def get_rate_limiter(request: Request) -> RateLimiter:
    limiter: RateLimiter = request.app.state.rate_limiter
    return limiter


api_key_header = APIKeyHeader(
    name=API_KEY_HEADER,
    auto_error=False,
    description="API key; roles `score` (scoring, queue, model, dashboard data) and `admin`.",
)


class RequireRole:
    """Dependency: the caller, if its key's role is ``role`` or stronger."""

    def __init__(self, role: str) -> None:
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}")
        self.role = role

    async def __call__(
        self,
        auth: Annotated[Authenticator, Depends(get_auth)],
        key: Annotated[str | None, Depends(api_key_header)],
        limiter: Annotated[RateLimiter, Depends(get_rate_limiter)],
    ) -> Caller:
        caller = auth.identify(key)
        if caller is None:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                f"missing API key ({API_KEY_HEADER} header)" if not key else "unknown API key",
                headers={"WWW-Authenticate": API_KEY_HEADER},
            )
        if ROLES.index(caller.role) < ROLES.index(self.role):
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                f"this key's role '{caller.role}' may not use this route (needs '{self.role}')",
            )
        limiter.check(caller.key_id)  # after auth: unknown keys never get a bucket
        return caller


ScoreCaller = Annotated[Caller, Depends(RequireRole("score"))]
AdminCaller = Annotated[Caller, Depends(RequireRole("admin"))]


# ----------------------------------------------------------------------- bodies
def validation_error(
    errors: list[Any], prefix: tuple[str | int, ...] = ("body",)
) -> RequestValidationError:
    return RequestValidationError(
        [{**error, "loc": (*prefix, *error.get("loc", ()))} for error in errors]
    )


class NonFiniteNumberError(ValueError):
    """A number in a JSON body that no answer could hold (see :func:`refuse_non_finite`)."""


def _not_a_number(name: str) -> float:
    raise NonFiniteNumberError(f"{name} is not a number JSON allows")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise NonFiniteNumberError(f"{text} is too large for a number")
    return value


def refuse_non_finite(raw: bytes) -> None:
    """422 for ``NaN``, ``Infinity``, ``-Infinity`` or a number beyond a float (``1e400``)
    anywhere in a JSON body, before any field is looked at: parsers accept them, but no
    score, comparison or JSON answer can hold them (an echo of one in a 422 was a 500).
    Malformed JSON is left to the model's own parser, which words it."""
    try:
        json.loads(raw, parse_constant=_not_a_number, parse_float=_finite)
    except NonFiniteNumberError as error:
        raise validation_error(
            [{"type": "json_invalid", "loc": (), "msg": f"JSON decode error: {error}"}]
        ) from None
    except (ValueError, RecursionError):  # malformed, not UTF-8, or nested too deep
        return


def is_json(content_type: str | None) -> bool:
    """``application/json`` or ``application/<anything>+json``, with any parameters."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    kind, _, subtype = media.partition("/")
    return kind == "application" and (subtype == "json" or subtype.endswith("+json"))


def decode_body(raw: bytes, model: type[BaseModel]) -> Any:
    refuse_non_finite(raw)
    try:
        return model.model_validate_json(raw)
    except ValidationError as error:
        raise validation_error(error.errors(include_url=False)) from None


async def parse_body(request: Request, model: type[BaseModel], ticket: Ticket | None = None) -> Any:
    """The body as ``model``; with a scoring ``ticket``, decoded on the scoring threads: a
    large batch takes about a second to validate, time the event loop owes to health checks."""
    raw = await request.body()
    # A body must say it is JSON (415 otherwise, before it is read as JSON), as FastAPI's own
    # strict content type does: text/plain, form encodings and no type at all are what a
    # browser may send cross-site without a CORS preflight (with LEADSCORE_AUTH=off nothing
    # else would stop another site's page from posting here). An empty body is left to the
    # model's 422.
    if raw and not is_json(request.headers.get("content-type")):
        raise HTTPException(
            status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
            "the body must be JSON, sent with Content-Type: application/json",
        )
    if ticket is not None:
        return await ticket.run(decode_body, raw, model)
    return decode_body(raw, model)


async def score_body(request: Request, api: ApiModelsDep, ticket: TicketDep) -> ScoreRequestBase:
    body: ScoreRequestBase = await parse_body(request, api.score_request, ticket)
    return body


async def batch_body(request: Request, api: ApiModelsDep, ticket: TicketDep) -> BatchRequestBase:
    body: BatchRequestBase = await parse_body(request, api.batch_request, ticket)
    return body


async def queue_body(request: Request, api: ApiModelsDep, ticket: TicketDep) -> QueueRequestBase:
    body: QueueRequestBase = await parse_body(request, api.queue_request, ticket)
    return body


ScoreBody = Annotated[ScoreRequestBase, Depends(score_body)]
BatchBody = Annotated[BatchRequestBase, Depends(batch_body)]
QueueBody = Annotated[QueueRequestBase, Depends(queue_body)]


# ----------------------------------------------------------------------- admission
async def get_admission(request: Request) -> Admission:
    admission: Admission = request.app.state.admission
    return admission


async def get_limits(request: Request) -> Limits:
    limits: Limits = request.app.state.limits
    return limits


AdmissionDep = Annotated[Admission, Depends(get_admission)]
LimitsDep = Annotated[Limits, Depends(get_limits)]


async def admitted(request: Request, admission: AdmissionDep) -> AsyncIterator[Ticket]:
    """A scoring slot for this request (503 with Retry-After when none is free), taken once its
    body has arrived (a slow upload holds no slot) and before it is decoded (a saturated server
    spends no time on bodies it refuses); the body is then decoded on the scoring threads."""
    await request.body()  # kept by the request: the body dependency reads it from there
    with admission.admit() as ticket:  # the slot is freed when the request and its jobs end
        yield ticket


TicketDep = Annotated[Ticket, Depends(admitted, scope="function")]
