"""Triton Python-backend model: the export's ONNX graph run by ONNX Runtime (CPU).

For hosts whose Triton has no ONNX Runtime backend (PyPI's tritonserver ships the Python
backend only). Requests that dynamic batching gathers run as one batch. Written by crossrt.
"""

import json
import os

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.input = config["input"][0]["name"]
        self.output = config["output"][0]["name"]
        path = os.path.join(args["model_repository"], args["model_version"], "model.onnx")
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1  # one per instance: --instances scales it
        self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])

    def execute(self, requests):
        arrays = [pb_utils.get_input_tensor_by_name(r, self.input).as_numpy() for r in requests]
        outputs = self.session.run([self.output], {self.input: np.concatenate(arrays)})[0]
        responses, start = [], 0
        for array in arrays:
            rows = np.ascontiguousarray(outputs[start:start + len(array)])
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor(self.output, rows)]))
            start += len(array)
        return responses
