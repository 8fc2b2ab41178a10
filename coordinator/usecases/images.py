"""Image tensors in the shape of aibench's classification use case (MobileNet V1, 224x224x3).

Pure (no I/O). Images are height x width x channels (NHWC, TensorFlow's layout, which the
lab's classifier takes); uint8 pixels, or float32 scaled to [0, 1]. The values do not change a
convolutional network's latency, so random pixels serve (smoothed a little so that they
compress like photographs rather than noise).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import numpy.typing as npt

HEIGHT = WIDTH = 224
CHANNELS = 3
Dtype = Literal["uint8", "float32"]


def images(count: int, seed: int, dtype: Dtype = "uint8") -> npt.NDArray[np.uint8 | np.float32]:
    """``count`` images, count x 224 x 224 x 3; the same seed and dtype, the same bytes."""
    if count < 1:
        raise ValueError("count must be at least 1")
    generator = np.random.default_rng([seed, 3])
    coarse = generator.integers(0, 256, (count, HEIGHT // 8, WIDTH // 8, CHANNELS))
    noise = generator.integers(-16, 17, (count, HEIGHT, WIDTH, CHANNELS))
    blocks = coarse.repeat(8, axis=1).repeat(8, axis=2)
    pixels: npt.NDArray[np.uint8] = np.clip(blocks + noise, 0, 255).astype(np.uint8)
    if dtype == "uint8":
        return pixels
    if dtype == "float32":
        scaled: npt.NDArray[np.float32] = pixels.astype(np.float32) / np.float32(255.0)
        return scaled
    raise ValueError(f"dtype must be uint8 or float32, not {dtype!r}")
