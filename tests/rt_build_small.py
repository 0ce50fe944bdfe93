"""Builds the small test export (see rt_fixtures.py): python rt_build_small.py OUT_DIR [--no-onnx].

A script file, not ``python -c``: paddle.jit.save reads the model's source code. With
FLAGS_enable_pir_api=0 in the environment jit.save writes a legacy inference.pdmodel.
"""

import sys

import paddle
import paddle2onnx
from paddle import nn


class Small(nn.Layer):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2D(3, 8, 3, padding=1), nn.BatchNorm2D(8), nn.ReLU(),
            nn.Conv2D(8, 16, 3, stride=2, padding=1), nn.ReLU(), nn.MaxPool2D(2),
            nn.Conv2D(16, 32, 3, padding=1), nn.Silu(), nn.AdaptiveAvgPool2D(1))
        self.fc = nn.Linear(32, 10)

    def forward(self, x):
        return self.fc(paddle.flatten(self.features(x), 1))


if __name__ == "__main__":
    out = sys.argv[1]
    paddle.seed(7)
    model = Small()
    model.eval()
    spec = paddle.static.InputSpec([None, 3, 32, 32], "float32", name="x")
    paddle.jit.save(model, out + "/paddle/inference", input_spec=[spec])
    if "--no-onnx" in sys.argv:
        sys.exit(0)
    paddle2onnx.export(out + "/paddle/inference.json", out + "/paddle/inference.pdiparams",
                       out + "/model.onnx", opset_version=13)
