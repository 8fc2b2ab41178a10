"""Synthetic data in the shape of aibench's two use cases, generated at setup (nothing is
downloaded): credit-card fraud transactions with reference data per customer, and image
tensors for classification. Documented in docs/model-serving.md.

    fraud.py   pure: transactions and reference data from a seed (numpy)
    images.py  pure: 224x224x3 image tensors from a seed (numpy)
    files.py   ``coord data generate``: the generated data written to a directory
    load.py    ``coord data load``: the reference data into a Redis server

numpy comes with the ``model-server`` extra; :func:`require_numpy` turns its absence into one
line naming the extra. The agent never imports this package.
"""

from __future__ import annotations

import importlib.util

from coordinator.core.errors import UsageError

MODEL_SERVER_EXTRA = "model-server"
"""The pyproject extra holding numpy, scikit-learn, onnx, onnxruntime, flask and gunicorn."""


def require_modules(what: str, *modules: str) -> None:
    """UsageError (one line, naming the extra) unless every module in ``modules`` imports."""
    missing = [name for name in modules if importlib.util.find_spec(name) is None]
    if missing:
        raise UsageError(
            f"{what} needs {', '.join(missing)}, from coord's {MODEL_SERVER_EXTRA!r} extra: "
            f"pip install 'coord[{MODEL_SERVER_EXTRA}]' (or scripts/install-python-env --dev)"
        )
