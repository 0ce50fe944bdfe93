"""crossrt's kernel: what every other package stands on, and nothing above it.

``errors`` (the one exception hierarchy), ``spec`` (a model as data, precisions, PaddleClas's
latency-table layouts), ``compare`` (the one comparison rule), ``provenance`` (hashes, tool
versions, atomic writes, path checks), ``layout`` (the export folder), ``graphs`` (reading,
writing, simplifying and converting ONNX files), ``preprocess`` (PaddleClas's preprocessing
and the inputs crossrt feeds). Imports are light: onnx, onnxsim and OpenCV are imported by the
functions that use them; nothing here imports paddle or a runtime.
"""
