"""The Flask application Gunicorn serves: ``gunicorn 'coordinator.modelserver.app:create_app()'``.

Each worker opens one onnxruntime session per model (``intra_op_threads`` each, one inter-op
thread) and one Redis connection pool; every fraud request fetches its customers' reference
data from Redis (one MGET), as aibench's use case does, before scoring. Bodies are parsed by
:mod:`coordinator.modelserver.shapes`; a malformed one is a 400 with ``{"error": reason}``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime
import redis
from flask import Flask, Response, jsonify, request

from coordinator.modelserver import CLASSIFIER_MODEL, FRAUD_MODEL, MODEL_FILES, shapes
from coordinator.modelserver.mobilenet import INPUT as IMAGE_INPUT
from coordinator.modelserver.settings import ServerSettings
from coordinator.usecases import fraud

FRAUD_INPUT = "X"
FRAUD_PROBABILITIES = 1
"""Index of the fraud model's ``probabilities`` output (rows x 2; column 1 is fraud)."""


class UnknownCustomer(LookupError):
    """A transaction's customer has no reference data in Redis (HTTP 404)."""


class Models:
    """One worker's sessions and Redis pool."""

    def __init__(self, settings: ServerSettings) -> None:
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = settings.intra_op_threads
        options.inter_op_num_threads = 1
        self.sessions = {
            name: onnxruntime.InferenceSession(
                str(settings.model_dir / file), options, providers=["CPUExecutionProvider"])
            for name, file in MODEL_FILES.items()
        }
        password = (settings.redis_password_file.read_text().rstrip("\n")
                    if settings.redis_password_file is not None else None)
        self.redis = redis.Redis(host=settings.redis_host, port=settings.redis_port,
                                 password=password, socket_timeout=10)

    def score_fraud(self, batch: shapes.FraudBatch) -> npt.NDArray[np.float32]:
        """Each transaction's fraud probability, with its customer's reference data."""
        keys = [fraud.reference_key(int(customer)) for customer in batch.customers]
        blobs = self.redis.mget(keys)
        rows = []
        for customer, blob in zip(batch.customers, blobs, strict=True):
            if not isinstance(blob, bytes) or len(blob) != fraud.REFERENCE_SIZE * 4:
                raise UnknownCustomer(f"no reference data for customer {int(customer)}")
            rows.append(np.frombuffer(blob, dtype="<f4"))
        inputs = fraud.model_input(batch.features, np.stack(rows))
        outputs = self.sessions[FRAUD_MODEL].run(None, {FRAUD_INPUT: inputs})
        scores: npt.NDArray[np.float32] = np.asarray(
            outputs[FRAUD_PROBABILITIES], dtype=np.float32)[:, 1]
        return scores

    def classify(self, images: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """Class scores, images x 1001."""
        outputs = self.sessions[CLASSIFIER_MODEL].run(None, {IMAGE_INPUT: images})
        return np.asarray(outputs[0], dtype=np.float32)


def create_app(settings: ServerSettings | None = None) -> Flask:
    """The application; its settings from the environment unless given."""
    models = Models(settings or ServerSettings.from_environ(os.environ))
    app = Flask("coord-model-server")

    def answer(handler: Callable[[], dict[str, Any]]) -> Response | tuple[Response, int]:
        try:
            return jsonify(handler())
        except shapes.BadRequest as exc:
            return jsonify(error=str(exc)), 400
        except UnknownCustomer as exc:
            return jsonify(error=str(exc)), 404

    def body() -> Any:
        document = request.get_json(silent=True)
        if document is None:
            raise shapes.BadRequest("the body must be JSON (Content-Type: application/json)")
        return document

    @app.get("/health")
    @app.get("/v2/health/ready")
    def health() -> Response:
        return jsonify(status="ok", models=sorted(MODEL_FILES))

    @app.post("/predict")
    def predict() -> Response | tuple[Response, int]:
        def handle() -> dict[str, Any]:
            batch = shapes.rest_fraud(body())
            scores = models.score_fraud(batch)
            return {"customer_id": int(batch.customers[0]), "score": float(scores[0]),
                    "scores": scores.tolist()}
        return answer(handle)

    @app.post("/classify")
    def classify() -> Response | tuple[Response, int]:
        def handle() -> dict[str, Any]:
            images = (shapes.rest_image(body()) if request.is_json
                      else shapes.raw_images(request.get_data()))
            scores = models.classify(images)
            return {"class": int(np.argmax(scores[0])), "score": float(np.max(scores[0])),
                    "scores": scores[0].tolist()}
        return answer(handle)

    @app.post("/v2/models/<name>/infer")
    def kserve_infer(name: str) -> Response | tuple[Response, int]:
        def handle() -> dict[str, Any]:
            if name == FRAUD_MODEL:
                scores = models.score_fraud(shapes.kserve_fraud(body()))
                return shapes.kserve_response(name, "score", scores)
            return shapes.kserve_response(
                name, "scores", models.classify(shapes.kserve_image(body())))
        return answer(handle) if name in MODEL_FILES else _unknown(name)

    @app.post("/v1/models/<name>:predict")
    def tfserving_predict(name: str) -> Response | tuple[Response, int]:
        def handle() -> dict[str, Any]:
            if name == FRAUD_MODEL:
                return shapes.tfserving_response(
                    models.score_fraud(shapes.tfserving_fraud(body())))
            return shapes.tfserving_response(models.classify(shapes.tfserving_image(body())))
        return answer(handle) if name in MODEL_FILES else _unknown(name)

    return app


def _unknown(name: str) -> tuple[Response, int]:
    return jsonify(error=f"no model named {name!r}; models: {', '.join(sorted(MODEL_FILES))}"), 404
