"""``crossrt triton``: model repositories checked by Triton's protobuf, then served for real.

The classifier is a hold-out model (tests/holdout.py, 10 flower classes) exported by crossrt.
Configs are read back with Triton's own ``ModelConfig`` protobuf and compared with the graph.
Where the Triton environment exists (``python scripts/triton_env.py``: PyPI's tritonserver
2.51 with its Python backend), a real server on 127.0.0.1 serves the repository: the bundled
photographs go in as JPEG bytes over HTTP and gRPC, and what comes back is compared with
crossrt's own ONNX Runtime run on crossrt's own decoding and preprocessing of the same bytes.
"""

from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import holdout
import numpy as np
import onnxruntime as ort
import pytest

import crossrt
from core.layout import ExportDir
from core.preprocess import bundled_photos, decode_image, preprocess
from exporter.specs import spec_of
from runtimes.trt_backends import TENSORRT_RTX

pytest.importorskip("tritonclient.grpc", reason="pip install 'crossrt[serve]'")
from google.protobuf import text_format  # noqa: E402
from tritonclient.grpc import model_config_pb2 as pb  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from triton_server import TritonServer, missing  # noqa: E402

pytestmark = pytest.mark.slow  # an export, and a server
NEEDS_SERVER = pytest.mark.skipif(missing() is not None, reason=str(missing()))


@pytest.fixture(scope="module")
def export(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("triton")
    model = holdout.paddleclas_flowers(root / "flowers_infer")
    assert crossrt.main(["export-onnx", str(model), "--out", str(root / "export")]) == 0
    return root / "export"


def config(repository: Path, model: str):
    return text_format.Parse((repository / model / "config.pbtxt").read_text(), pb.ModelConfig())


def jpeg(image: np.ndarray) -> bytes:
    ok, encoded = cv2.imencode(".jpg", image[:, :, ::-1])
    assert ok
    return encoded.tobytes()


def test_configs_read_back_by_tritons_protobuf_and_match_the_graph(export, tmp_path):
    repo = tmp_path / "repo"
    assert crossrt.main(["triton", str(export), "--out", str(repo), "--ensemble",
                         "--dynamic-batching", "--preferred-batch-sizes", "4,8", "--instances",
                         "2", "--tensorrt-accelerator"]) == 0
    classifier = config(repo, "flowers_infer")
    assert classifier.platform == "onnxruntime_onnx" and classifier.max_batch_size == 8
    assert [(t.name, list(t.dims), t.data_type) for t in classifier.input] == \
        [("x", [3, 64, 64], pb.TYPE_FP32)]
    assert [(t.name, list(t.dims)) for t in classifier.output] == [("probabilities", [10])]
    assert list(classifier.dynamic_batching.preferred_batch_size) == [4, 8]
    assert classifier.instance_group[0].count == 2
    accelerator = classifier.optimization.execution_accelerators.gpu_execution_accelerator[0]
    assert (accelerator.name, accelerator.parameters["precision_mode"]) == ("tensorrt", "FP16")
    assert (repo / "flowers_infer" / "1" / "model.onnx").read_bytes() == \
        (export / "model.onnx").read_bytes()
    pipeline = config(repo, "flowers_infer_pipeline")
    assert pipeline.platform == "ensemble"
    assert [s.model_name for s in pipeline.ensemble_scheduling.step] == \
        ["flowers_infer_preprocess", "flowers_infer", "flowers_infer_postprocess"]
    assert (repo / "flowers_infer_postprocess" / "labels.txt").read_text().split("\n")[:10] == \
        holdout.FLOWERS
    # the preprocessing served is crossrt's own code, byte for byte
    copied = repo / "flowers_infer_preprocess" / "1" / "core" / "preprocess.py"
    assert copied.read_bytes() == (Path(__file__).parents[1] / "core" / "preprocess.py"
                                   ).read_bytes()


def test_bad_requests_are_one_line_exit_2(export, tmp_path, capsys):
    cases = {
        "preferred above the max": (["--max-batch-size", "4", "--dynamic-batching",
                                     "--preferred-batch-sizes", "8"], "is outside 1 to"),
        "preferred without batching": (["--preferred-batch-sizes", "4"], "--dynamic-batching"),
        "accelerator on python": (["--classifier-backend", "python", "--tensorrt-accelerator"],
                                  "leave out --classifier-backend python"),
        "a missing plan": (["--engine", str(tmp_path / "none.plan")], "does not exist"),
    }
    for name, (argv, fragment) in cases.items():
        code = crossrt.main(["triton", str(export), "--out", str(tmp_path / "r"), *argv])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and fragment in err[-1], (name, err)
        assert not (tmp_path / "r").exists()
    (tmp_path / "mine").mkdir()
    assert crossrt.main(["triton", str(export), "--out", str(tmp_path / "mine")]) == 2
    assert "not a Triton repository crossrt wrote" in capsys.readouterr().err
    assert crossrt.main(["triton", str(export), "--out", str(tmp_path / "r")]) == 0
    assert crossrt.main(["triton", str(export), "--out", str(tmp_path / "r")]) == 2
    assert "--force" in capsys.readouterr().err
    assert crossrt.main(["triton", str(export), "--out", str(tmp_path / "r"), "--force"]) == 0


@pytest.mark.skipif(TENSORRT_RTX.build_reason() is not None,
                    reason=str(TENSORRT_RTX.build_reason()))
def test_a_plan_is_served_within_its_profile(export, tmp_path, capsys):
    plan = tmp_path / "flowers.plan"
    assert crossrt.main(["build-engine", "--onnx", str(export / "model.onnx"), "--saveEngine",
                         str(plan), "--minShapes", "x:1x3x64x64", "--optShapes", "x:4x3x64x64",
                         "--maxShapes", "x:4x3x64x64", "--skipInference"]) == 0
    code = crossrt.main(["triton", str(export), "--out", str(tmp_path / "r"), "--engine",
                         str(plan)])
    assert code == 2 and "runs batches 1 to 4, and --max-batch-size is 8: give at most 4" in \
        capsys.readouterr().err
    assert crossrt.main(["triton", str(export), "--out", str(tmp_path / "r"), "--engine",
                         str(plan), "--max-batch-size", "4"]) == 0
    served = config(tmp_path / "r", "flowers_infer_trt")
    assert (served.platform, served.max_batch_size) == ("tensorrt_plan", 4)
    assert [(t.name, list(t.dims)) for t in served.input] == [("x", [3, 64, 64])]
    assert [(t.name, list(t.dims)) for t in served.output] == [("probabilities", [10])]
    assert (tmp_path / "r" / "flowers_infer_trt" / "1" / "model.plan").read_bytes() == \
        plan.read_bytes()


# --- a real server ------------------------------------------------------------------------

@NEEDS_SERVER
@pytest.mark.skipif(TENSORRT_RTX.build_reason() is not None,
                    reason=str(TENSORRT_RTX.build_reason()))
def test_the_server_reads_the_onnxruntime_and_plan_configs(export, tmp_path):
    """PyPI's server has neither backend, so it loads neither model; what it says shows it read
    and accepted both configs (a config it cannot read gets no state at all)."""
    import json
    import urllib.request

    plan = tmp_path / "flowers.plan"
    assert crossrt.main(["build-engine", "--onnx", str(export / "model.onnx"), "--saveEngine",
                         str(plan), "--skipInference"]) == 0
    repo = tmp_path / "repo"
    assert crossrt.main(["triton", str(export), "--out", str(repo), "--engine", str(plan),
                         "--tensorrt-accelerator", "--dynamic-batching"]) == 0
    with TritonServer(repo, "--exit-on-error=false", until="live") as running:
        request = urllib.request.Request(f"http://{running.http}/v2/repository/index",
                                         method="POST")
        with urllib.request.urlopen(request, timeout=10) as response:
            index = {m["name"]: m for m in json.load(response)}
    for model, backend in (("flowers_infer", "onnxruntime"), ("flowers_infer_trt", "tensorrt")):
        assert index[model]["state"] == "UNAVAILABLE"
        assert index[model]["reason"].startswith(
            f"Invalid argument: unable to find backend library for backend '{backend}'")

@pytest.fixture(scope="module")
def server(export, tmp_path_factory):
    if missing() is not None:
        pytest.skip(str(missing()))
    repo = tmp_path_factory.mktemp("served") / "repo"
    assert crossrt.main(["triton", str(export), "--out", str(repo), "--ensemble",
                         "--classifier-backend", "python", "--dynamic-batching"]) == 0
    with TritonServer(repo) as running:
        yield running


def crossrt_outputs(export: Path, encoded: list[bytes]) -> np.ndarray:
    """What crossrt computes on the same bytes: its decoding, preprocessing, ONNX Runtime."""
    spec = spec_of(ExportDir(export).manifest())
    batch = np.stack([preprocess(decode_image(data), spec) for data in encoded])
    session = ort.InferenceSession(str(export / "model.onnx"), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": batch})[0]


@NEEDS_SERVER
@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_a_jpeg_in_labels_out_as_crossrt_computes_them(export, server, protocol):
    import tritonclient.grpc as grpc
    import tritonclient.http as http

    client_module = http if protocol == "http" else grpc
    client = client_module.InferenceServerClient(server.http if protocol == "http"
                                                 else server.grpc)
    encoded = [jpeg(image) for _, image in bundled_photos()]
    images = client_module.InferInput("IMAGE", [len(encoded), 1], "BYTES")
    images.set_data_from_numpy(np.array([[data] for data in encoded], dtype=object))
    result = client.infer("flowers_infer_pipeline", [images])
    expected = crossrt_outputs(export, encoded)
    served = result.as_numpy("probabilities")
    assert np.abs(served - expected).max() <= 1e-6
    top5 = np.argsort(-expected, axis=1, kind="stable")[:, :5]
    assert (result.as_numpy("CLASS_IDS") == top5).all()
    assert [[label.decode() for label in row] for row in result.as_numpy("LABELS")] == \
        [[holdout.FLOWERS[i] for i in row] for row in top5]
    np.testing.assert_allclose(result.as_numpy("SCORES"),
                               np.take_along_axis(expected, top5, axis=1), atol=1e-6)


@NEEDS_SERVER
def test_bad_requests_get_tritons_error_and_the_server_goes_on(export, server):
    import tritonclient.http as http
    from tritonclient.utils import InferenceServerException

    client = http.InferenceServerClient(server.http)

    def infer(model: str, name: str, array: np.ndarray, kind: str) -> str:
        tensor = http.InferInput(name, list(array.shape), kind)
        tensor.set_data_from_numpy(array)
        with pytest.raises(InferenceServerException) as error:
            client.infer(model, [tensor])
        return str(error.value)

    assert "batch-size must be <= 8" in infer("flowers_infer", "x",
                                              np.zeros((9, 3, 64, 64), np.float32), "FP32")
    assert "unexpected shape for input 'x'" in infer("flowers_infer", "x",
                                                      np.zeros((1, 3, 32, 32), np.float32),
                                                      "FP32")
    assert "cannot preprocess the image" in infer(
        "flowers_infer_pipeline", "IMAGE", np.array([[b"not a jpeg"]], dtype=object), "BYTES")
    assert client.is_server_live() and client.is_model_ready("flowers_infer_pipeline")


@NEEDS_SERVER
def test_concurrent_clients_lose_no_request(export, server):
    """8 clients x 25 requests at once, each a photograph: every answer is the right one."""
    import tritonclient.http as http

    photos = [jpeg(image) for _, image in bundled_photos()]
    expected = crossrt_outputs(export, photos).argmax(1)

    def client_run(index: int) -> list[bool]:
        client = http.InferenceServerClient(server.http)
        answers = []
        for request in range(25):
            which = (index + request) % len(photos)
            tensor = http.InferInput("IMAGE", [1, 1], "BYTES")
            tensor.set_data_from_numpy(np.array([[photos[which]]], dtype=object))
            ids = client.infer("flowers_infer_pipeline", [tensor]).as_numpy("CLASS_IDS")
            answers.append(int(ids[0, 0]) == expected[which])
        return answers

    with ThreadPoolExecutor(8) as pool:
        answers = [a for run in pool.map(client_run, range(8)) for a in run]
    assert len(answers) == 200 and all(answers)
