"""A MobileNet V1-shaped network (224x224x3 in, 1001 class scores out) built with onnx's
helper API, with random weights.

Pure (no I/O). The layers are MobileNet V1's (Howard et al. 2017, table 1, width 1.0): a 3x3
convolution of stride 2, thirteen depthwise-separable blocks, a global average pool, a 1x1
convolution to 1001 classes (TensorFlow's: 1000 and a background class) and a softmax, with
batch normalization folded into the convolutions' biases as an inference graph has it, and
ReLU6. The input is NHWC (TF Serving's layout) and is transposed to NCHW first. Weights are
random (He-scaled, so activations stay finite): a network's latency depends on its shapes and
operators, not on its weights' values.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

INPUT = "image"
OUTPUT = "scores"
CLASSES = 1001
SIZE = 224
OPSET = 13
BLOCKS = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
          (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1))
"""(output channels, stride) of each depthwise-separable block."""


class _Graph:
    def __init__(self, seed: int) -> None:
        self.generator = np.random.default_rng([seed, 4])
        self.nodes: list[onnx.NodeProto] = []
        self.weights: list[onnx.TensorProto] = []
        self.count = 0

    def name(self, kind: str) -> str:
        self.count += 1
        return f"{kind}{self.count}"

    def conv(self, source: str, channels_in: int, channels_out: int, kernel: int, stride: int,
             group: int = 1, relu6: bool = True) -> str:
        fan_in = channels_in // group * kernel * kernel
        shape = (channels_out, channels_in // group, kernel, kernel)
        weight = self.generator.standard_normal(shape) * np.sqrt(2.0 / fan_in)
        w_name, b_name, out = self.name("w"), self.name("b"), self.name("conv")
        self.weights += [numpy_helper.from_array(weight.astype(np.float32), w_name),
                         numpy_helper.from_array(np.zeros(channels_out, np.float32), b_name)]
        pad = kernel // 2
        self.nodes.append(helper.make_node(
            "Conv", [source, w_name, b_name], [out], kernel_shape=[kernel, kernel],
            strides=[stride, stride], pads=[pad, pad, pad, pad], group=group))
        if not relu6:
            return out
        clipped = self.name("relu6")
        self.nodes.append(helper.make_node("Clip", [out, "zero", "six"], [clipped]))
        return clipped


def mobilenet_v1(seed: int) -> onnx.ModelProto:
    """The network, checked by onnx's checker; the same seed gives the same weights."""
    graph = _Graph(seed)
    graph.weights += [numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
                      numpy_helper.from_array(np.array(6.0, np.float32), "six")]
    graph.nodes.append(helper.make_node("Transpose", [INPUT], ["nchw"], perm=[0, 3, 1, 2]))
    current, channels = graph.conv("nchw", 3, 32, 3, 2), 32
    for channels_out, stride in BLOCKS:
        current = graph.conv(current, channels, channels, 3, stride, group=channels)
        current, channels = graph.conv(current, channels, channels_out, 1, 1), channels_out
    graph.nodes.append(helper.make_node("GlobalAveragePool", [current], ["pooled"]))
    logits = graph.conv("pooled", channels, CLASSES, 1, 1, relu6=False)
    graph.nodes.append(helper.make_node("Flatten", [logits], ["logits"], axis=1))
    graph.nodes.append(helper.make_node("Softmax", ["logits"], [OUTPUT], axis=1))
    model = helper.make_model(
        helper.make_graph(
            graph.nodes, "mobilenet_v1_random",
            [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, ["N", SIZE, SIZE, 3])],
            [helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, ["N", CLASSES])],
            graph.weights),
        opset_imports=[helper.make_opsetid("", OPSET)], producer_name="coord")
    onnx.checker.check_model(model)
    return model
