"""``python -m coordinator.modelserver.build DIR``: the lab's models, made at setup.

Writes ``fraud.onnx`` (a standardizing scaler and a logistic regression, trained on the
synthetic transactions joined with their customers' reference data, exported with skl2onnx)
and ``mobilenet.onnx`` (:mod:`coordinator.modelserver.mobilenet`) into DIR; with ``--redis``,
also loads the reference data the fraud endpoint fetches into that Redis server. ``coord lab
up --model-server`` runs it once, in a process of its own so that the coordinator never
imports scikit-learn.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import redis
from skl2onnx import to_onnx
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from coordinator.modelserver import CLASSIFIER_MODEL, FRAUD_MODEL, MODEL_FILES
from coordinator.modelserver.mobilenet import mobilenet_v1
from coordinator.usecases import fraud
from coordinator.usecases.load import load_reference

TRAINING_ROWS = 20_000
DEFAULT_CUSTOMERS = 1_000
FRAUD_INPUT = "X"
"""The fraud model's input (skl2onnx's name): rows of 30 transaction values then 256 reference
values; its second output, ``probabilities``, is rows x 2 (the second column: fraud)."""


def fraud_model(seed: int, customers: int) -> bytes:
    """The trained fraud model as ONNX bytes (its output ``probabilities``: rows x 2)."""
    data = fraud.transactions(TRAINING_ROWS, customers, seed)
    reference = fraud.reference_data(customers, seed)
    inputs = fraud.model_input(data.features, reference[data.customers])
    pipeline = make_pipeline(StandardScaler(),
                             LogisticRegression(max_iter=500, class_weight="balanced"))
    pipeline.fit(inputs, data.labels)
    model = to_onnx(pipeline, inputs[:1].astype(np.float32),
                    options={LogisticRegression: {"zipmap": False}}, target_opset=13)
    return bytes(model.SerializeToString())


def build(directory: Path, seed: int, customers: int) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, content in ((FRAUD_MODEL, fraud_model(seed, customers)),
                          (CLASSIFIER_MODEL, mobilenet_v1(seed).SerializeToString())):
        path = directory / MODEL_FILES[name]
        path.write_bytes(content)
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m coordinator.modelserver.build")
    parser.add_argument("directory", type=Path)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--customers", type=int, default=DEFAULT_CUSTOMERS)
    parser.add_argument("--redis", metavar="HOST:PORT", default=None,
                        help="load the reference data into this Redis server")
    parser.add_argument("--password-file", type=Path, default=None)
    arguments = parser.parse_args(argv)
    build(arguments.directory, arguments.seed, arguments.customers)
    if arguments.redis is not None:
        host, _, port = arguments.redis.rpartition(":")
        password = (arguments.password_file.read_text().rstrip("\n")
                    if arguments.password_file is not None else None)
        client = redis.Redis(host=host, port=int(port), password=password, socket_timeout=30)
        try:
            load_reference(client, fraud.reference_data(arguments.customers, arguments.seed))
        finally:
            client.close()


if __name__ == "__main__":
    main()
