"""Triton Python-backend model: encoded images (JPEG/PNG bytes) to the classifier's input.

Decoding and preprocessing are crossrt's own (``core/`` beside this file, a copy of crossrt's),
with the export's spec (``spec.json``): the pixels are those crossrt validated. A bad image is
that request's error, not the server's. Written by crossrt.
"""

import json
import os

import numpy as np
import triton_python_backend_utils as pb_utils

from core.preprocess import decode_image, preprocess
from core.spec import ModelSpec


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.output = config["output"][0]["name"]
        here = os.path.join(args["model_repository"], args["model_version"])
        with open(os.path.join(here, "spec.json")) as file:
            self.spec = ModelSpec.from_dict(json.load(file))

    def execute(self, requests):
        responses = []
        for request in requests:
            images = pb_utils.get_input_tensor_by_name(request, "IMAGE").as_numpy()
            try:
                batch = np.stack([preprocess(decode_image(bytes(row[0])), self.spec)
                                  for row in images])
            except Exception as error:  # noqa: BLE001 - the client's image, the client's error
                responses.append(pb_utils.InferenceResponse(
                    error=pb_utils.TritonError(f"cannot preprocess the image: {error}")))
                continue
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor(self.output, batch)]))
        return responses
