"""Triton Python-backend model: the classifier's output to the top-k classes, with names.

``top_k`` and whether the output is probabilities already (PaddleClas's exported Softmax) are
config parameters; names come from ``labels.txt`` beside the config. Written by crossrt.
"""

import json
import os

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.input = config["input"][0]["name"]
        parameters = {k: v["string_value"] for k, v in config["parameters"].items()}
        self.k = int(parameters["top_k"])
        self.probabilities = parameters["probabilities"] == "1"
        with open(os.path.join(args["model_repository"], "labels.txt"), encoding="utf-8") as f:
            self.labels = [line.rstrip("\n").encode("utf-8") for line in f]

    def execute(self, requests):
        responses = []
        for request in requests:
            scores = pb_utils.get_input_tensor_by_name(request, self.input).as_numpy()
            scores = scores.astype(np.float32)
            if not self.probabilities:
                shifted = np.exp(scores - scores.max(axis=1, keepdims=True))
                scores = shifted / shifted.sum(axis=1, keepdims=True)
            top = np.argsort(-scores, axis=1, kind="stable")[:, :self.k]
            labels = np.array([[self.labels[i] for i in row] for row in top], dtype=object)
            responses.append(pb_utils.InferenceResponse([
                pb_utils.Tensor("SCORES", np.take_along_axis(scores, top, axis=1)),
                pb_utils.Tensor("CLASS_IDS", top.astype(np.int64)),
                pb_utils.Tensor("LABELS", labels)]))
        return responses
