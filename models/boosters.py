"""Importing LightGBM for processes that only load and predict with boosters."""

from __future__ import annotations

import sys


def lightgbm_without_sklearn() -> None:
    """Import LightGBM with scikit-learn hidden, so that it does not import it (0.7–1.1 s and
    about 40 MB: ``lightgbm.compat`` imports scikit-learn, and with it SciPy's statistics, to
    define its scikit-learn estimators). Boosters load and predict the same; only
    ``lightgbm.LGBMClassifier`` and its kin are unusable in this process (leadscore trains with
    ``lightgbm.train``). Nothing happens if either is imported already (tests, or a process
    that fits models); scikit-learn itself stays importable afterwards."""
    if "lightgbm" in sys.modules or "sklearn" in sys.modules:
        return
    sys.modules["sklearn"] = None  # type: ignore[assignment]  # `import sklearn` → ImportError
    try:
        import lightgbm  # noqa: F401
    finally:
        del sys.modules["sklearn"]
