#!/usr/bin/env python3
"""Writes the single-op ONNX graphs the browser benchmark runs in onnxruntime-web, at the
same shapes as Easel's own op benchmarks (src/bench/suite.rs):

  matmul_{M}x{K}x{N}.onnx    Y = X[M,K] @ W[K,N]             (W an initializer)
  conv3x3_{H}x{W}x{C}.onnx   Y = Conv(X[1,C,H,W], W[C,C,3,3], B[C]), pads 1
  attention_{L}_{H}x{D}.onnx softmax(Q K^T / sqrt(D)) V per head, Q/K/V [1,L,H*D]

Usage: python3 scripts/bench/make_onnx.py OUT_DIR      (needs the `onnx` package)
"""

import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17


def save(graph, path):
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="easel-bench")
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)


def matmul(out, m, k, n, rng):
    w = numpy_helper.from_array((rng.standard_normal((k, n)) * 0.05).astype(np.float32), "W")
    g = helper.make_graph(
        [helper.make_node("MatMul", ["X", "W"], ["Y"])],
        "matmul",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [m, k])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [m, n])],
        [w],
    )
    save(g, os.path.join(out, f"matmul_{m}x{k}x{n}.onnx"))


def conv3x3(out, c, hw, rng):
    w = numpy_helper.from_array((rng.standard_normal((c, c, 3, 3)) * 0.05).astype(np.float32), "W")
    b = numpy_helper.from_array((rng.standard_normal((c,)) * 0.05).astype(np.float32), "B")
    g = helper.make_graph(
        [helper.make_node("Conv", ["X", "W", "B"], ["Y"], kernel_shape=[3, 3], pads=[1, 1, 1, 1])],
        "conv",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, c, hw, hw])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [1, c, hw, hw])],
        [w, b],
    )
    save(g, os.path.join(out, f"conv3x3_{hw}x{hw}x{c}.onnx"))


def attention(out, l, heads, d):
    """Heads split from [1, L, H*D] as Easel's graph takes them, and joined back."""
    scale = numpy_helper.from_array(np.array(1.0 / np.sqrt(d), dtype=np.float32), "scale")
    split = numpy_helper.from_array(np.array([1, l, heads, d], dtype=np.int64), "split")
    joined = numpy_helper.from_array(np.array([1, l, heads * d], dtype=np.int64), "joined")
    nodes = [
        helper.make_node("Reshape", ["Q", "split"], ["Qs"]),
        helper.make_node("Transpose", ["Qs"], ["Qh"], perm=[0, 2, 1, 3]),
        helper.make_node("Reshape", ["K", "split"], ["Ks"]),
        helper.make_node("Transpose", ["Ks"], ["Kt"], perm=[0, 2, 3, 1]),
        helper.make_node("Reshape", ["V", "split"], ["Vs"]),
        helper.make_node("Transpose", ["Vs"], ["Vh"], perm=[0, 2, 1, 3]),
        helper.make_node("MatMul", ["Qh", "Kt"], ["S"]),
        helper.make_node("Mul", ["S", "scale"], ["Ss"]),
        helper.make_node("Softmax", ["Ss"], ["P"], axis=-1),
        helper.make_node("MatMul", ["P", "Vh"], ["Yh"]),
        helper.make_node("Transpose", ["Yh"], ["Ys"], perm=[0, 2, 1, 3]),
        helper.make_node("Reshape", ["Ys", "joined"], ["Y"]),
    ]
    io = lambda name: helper.make_tensor_value_info(name, TensorProto.FLOAT, [1, l, heads * d])
    g = helper.make_graph(nodes, "attention", [io("Q"), io("K"), io("V")], [io("Y")], [scale, split, joined])
    save(g, os.path.join(out, f"attention_{l}_{heads}x{d}.onnx"))


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "www/bench-models"
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(0)
    for m, k, n in [(4096, 320, 320), (1024, 1280, 1280), (77, 1024, 4096)]:
        matmul(out, m, k, n, rng)
    # The UNet's top levels at 512 px and its deepest at 256 px, as suite.rs has them.
    for c, hw in [(320, 64), (640, 32), (1280, 4)]:
        conv3x3(out, c, hw, rng)
    # One 64-wide head (SD) and eight 16 wide (emoji-sd), as suite.rs has them.
    for heads, d in [(1, 64), (8, 16)]:
        attention(out, 4096, heads, d)
    print(f"wrote {len(os.listdir(out))} models to {out}")


if __name__ == "__main__":
    main()
