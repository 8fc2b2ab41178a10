"""The request and response bodies the model server answers, in three API shapes.

Pure (no I/O): JSON documents (already parsed) and raw bytes in, arrays out; arrays in,
JSON documents out. A body that does not fit raises :class:`BadRequest` (HTTP 400) with a
one-line reason. docs/model-serving.md ("The lab's model server") shows every shape.

- common REST (aibench's Flask service): ``POST /predict`` ``{"customer_id": 17,
  "transaction": [30 numbers]}``; ``POST /classify`` ``{"image": 224x224x3 nested lists}``
  or the raw bytes of one image (uint8 or float32, HWC).
- KServe v2: ``POST /v2/models/{name}/infer`` ``{"inputs": [{"name", "shape", "datatype",
  "data"}]}`` -> ``{"model_name", "outputs": [...]}``.
- TF Serving REST: ``POST /v1/models/{name}:predict`` ``{"instances": [...]}`` ->
  ``{"predictions": [...]}``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from coordinator.usecases.fraud import FEATURES
from coordinator.usecases.images import CHANNELS, HEIGHT, WIDTH

IMAGE_SHAPE = (HEIGHT, WIDTH, CHANNELS)
IMAGE_VALUES = HEIGHT * WIDTH * CHANNELS
MAX_BATCH = 64
KSERVE_TYPES: dict[str, type[np.generic]] = {
    "FP32": np.float32, "FP64": np.float64, "UINT8": np.uint8, "INT32": np.int32,
    "INT64": np.int64}


class BadRequest(ValueError):
    """The body does not fit the endpoint's shape (HTTP 400)."""


@dataclass(frozen=True)
class FraudBatch:
    """Transactions to score: rows x 30 float32, and each row's customer id."""

    features: npt.NDArray[np.float32]
    customers: npt.NDArray[np.int64]


def _array(values: Any, dtype: type[np.generic], what: str) -> npt.NDArray[Any]:
    try:
        array = np.asarray(values, dtype=dtype)
    except (TypeError, ValueError) as exc:
        raise BadRequest(f"{what}: not an array of numbers ({exc})") from None
    return array


def _object(body: Any) -> Mapping[str, Any]:
    if not isinstance(body, Mapping):
        raise BadRequest("the body must be a JSON object")
    return body


def fraud_batch(transactions: Any, customers: Any) -> FraudBatch:
    """Rows of 30 values and as many customer ids (non-negative integers)."""
    features = _array(transactions, np.float32, "transaction")
    if features.ndim == 1:
        features = features[np.newaxis, :]
    ids = _array(customers, np.float64, "customer_id").reshape(-1)
    if features.ndim != 2 or features.shape[1] != FEATURES:
        raise BadRequest(f"a transaction has {FEATURES} values, not shape {features.shape}")
    if not 1 <= len(features) <= MAX_BATCH or len(ids) != len(features):
        raise BadRequest(f"{len(features)} transaction(s) for {len(ids)} customer id(s); "
                         f"send 1 to {MAX_BATCH}, each with its customer id")
    if np.any(ids < 0) or np.any(ids != np.floor(ids)):
        raise BadRequest("customer ids are non-negative integers")
    return FraudBatch(features=features, customers=ids.astype(np.int64))


def images(values: Any, dtype: type[np.generic] = np.float32) -> npt.NDArray[np.float32]:
    """Images as N x 224 x 224 x 3 float32 (uint8 pixels are scaled to [0, 1])."""
    array = _array(values, dtype, "image")
    if array.size % IMAGE_VALUES or not 1 <= array.size // IMAGE_VALUES <= MAX_BATCH:
        raise BadRequest(f"an image is {HEIGHT}x{WIDTH}x{CHANNELS} values, not {array.size}")
    array = array.reshape(-1, *IMAGE_SHAPE)
    if array.dtype == np.uint8:
        return (array.astype(np.float32) / np.float32(255.0)).astype(np.float32)
    return array.astype(np.float32)


def raw_images(data: bytes) -> npt.NDArray[np.float32]:
    """A binary body: whole uint8 images (150,528 bytes each) or float32 ones (602,112)."""
    if data and len(data) % (IMAGE_VALUES * 4) == 0:
        return images(np.frombuffer(data, dtype="<f4"))
    if data and len(data) % IMAGE_VALUES == 0:
        return images(np.frombuffer(data, dtype=np.uint8), np.uint8)
    raise BadRequest(f"a binary image is {IMAGE_VALUES} uint8 or {IMAGE_VALUES * 4} float32 "
                     f"bytes, not {len(data)}")


# --- common REST ---------------------------------------------------------------------------


def rest_fraud(body: Any) -> FraudBatch:
    document = _object(body)
    if "transaction" not in document or "customer_id" not in document:
        raise BadRequest("the body needs customer_id and transaction")
    return fraud_batch(document["transaction"], document["customer_id"])


def rest_image(body: Any) -> npt.NDArray[np.float32]:
    document = _object(body)
    if "image" not in document:
        raise BadRequest("the body needs image (224x224x3 numbers)")
    return images(document["image"])


# --- KServe v2 -----------------------------------------------------------------------------


def kserve_inputs(body: Any) -> dict[str, npt.NDArray[Any]]:
    """Input name -> array of its shape and datatype."""
    inputs = _object(body).get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise BadRequest("inputs must be a non-empty list")
    arrays: dict[str, npt.NDArray[Any]] = {}
    for entry in inputs:
        tensor = _object(entry)
        name, shape, datatype = tensor.get("name"), tensor.get("shape"), tensor.get("datatype")
        if not isinstance(name, str) or not isinstance(shape, list) or "data" not in tensor:
            raise BadRequest("each input needs name, shape, datatype and data")
        if datatype not in KSERVE_TYPES:
            raise BadRequest(f"input {name}: datatype {datatype!r} is not one of "
                             f"{', '.join(KSERVE_TYPES)}")
        array = _array(tensor["data"], KSERVE_TYPES[datatype], f"input {name}")
        try:
            arrays[name] = array.reshape([int(size) for size in shape])
        except (TypeError, ValueError):
            raise BadRequest(f"input {name}: {array.size} values do not fill shape {shape}"
                             ) from None
    return arrays


def kserve_fraud(body: Any) -> FraudBatch:
    arrays = kserve_inputs(body)
    if "transaction" not in arrays or "customer_id" not in arrays:
        raise BadRequest("the fraud model's inputs are transaction and customer_id")
    return fraud_batch(arrays["transaction"], arrays["customer_id"])


def kserve_image(body: Any) -> npt.NDArray[np.float32]:
    arrays = kserve_inputs(body)
    if "image" not in arrays:
        raise BadRequest("the mobilenet model's input is image")
    image = arrays["image"]
    pixel_type: type[np.generic] = np.uint8 if image.dtype == np.uint8 else np.float32
    return images(image, pixel_type)


def kserve_response(model: str, output: str, values: npt.NDArray[np.float32]) -> dict[str, Any]:
    return {"model_name": model, "outputs": [{
        "name": output, "datatype": "FP32", "shape": list(values.shape),
        "data": values.reshape(-1).tolist()}]}


# --- TF Serving REST -----------------------------------------------------------------------


def _instances(body: Any) -> list[Any]:
    instances = _object(body).get("instances")
    if not isinstance(instances, list) or not instances:
        raise BadRequest("instances must be a non-empty list")
    return instances


def tfserving_fraud(body: Any) -> FraudBatch:
    rows = [_object(row) for row in _instances(body)]
    if any("transaction" not in row or "customer_id" not in row for row in rows):
        raise BadRequest("each instance needs customer_id and transaction")
    return fraud_batch([row["transaction"] for row in rows], [row["customer_id"] for row in rows])


def tfserving_image(body: Any) -> npt.NDArray[np.float32]:
    return images(_instances(body))


def tfserving_response(values: npt.NDArray[np.float32]) -> dict[str, Any]:
    return {"predictions": values.tolist()}
