"""The score store: every score leadscore gives, and sales' verdicts, recorded in a database
(SQLite file by default, PostgreSQL for teams; ``LEADSCORE_STORE_URL``).

* :func:`open_store` → :class:`ScoreStore` (or :class:`NullStore` when ``off``): record,
  history, latest, trend, scores_between, add_feedback, feedback.
* :class:`Recorder`: the API's non-blocking, batching writer in front of a store.
* :class:`ScoreRecord`, :class:`FeedbackRecord`: what is recorded.

Importing this package creates no engine and touches no file.
"""

from models.store.connection import ENV_VAR, store_url
from models.store.errors import StoreError
from models.store.recorder import Recorder, RecorderCounts
from models.store.records import (
    Direction,
    FeedbackRecord,
    Grade,
    LeadTrend,
    ScoreRecord,
    Source,
    StoredFeedback,
    StoredScore,
    Verdict,
)
from models.store.store import NullStore, ScoreStore, Store, open_store

__all__ = [
    "ENV_VAR",
    "Direction",
    "FeedbackRecord",
    "Grade",
    "LeadTrend",
    "NullStore",
    "Recorder",
    "RecorderCounts",
    "ScoreRecord",
    "ScoreStore",
    "Source",
    "Store",
    "StoreError",
    "StoredFeedback",
    "StoredScore",
    "Verdict",
    "open_store",
    "store_url",
]
