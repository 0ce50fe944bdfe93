"""validation.localize: planted faults in real ONNX graphs are found at the node that holds them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.compare import tolerance_for
from core.errors import UsageError
from validation.localize import localize, localize_sources, onnx_tensors, runner_tensors

FP32, FP16 = tolerance_for("fp32"), tolerance_for("fp16")


# ---- a small CNN built with onnx.helper ---------------------------------------------------

def cnn(overflow: bool = False):
    """conv-relu, conv-swish, [x3e4 / 3e4,] conv, pool, gemm: float32, He-scaled weights."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)

    def he(*shape: int) -> np.ndarray:
        return (rng.normal(size=shape) * np.sqrt(2 / np.prod(shape[1:]))).astype(np.float32)

    weights = {"w1": he(8, 3, 3, 3), "b1": np.full(8, 0.1, np.float32), "w2": he(16, 8, 3, 3),
               "b2": np.zeros(16, np.float32), "w3": he(16, 16, 1, 1), "fc": he(10, 16),
               "big": np.array(3e4, np.float32)}
    node = helper.make_node
    nodes = [node("Conv", ["x", "w1", "b1"], ["c1"], "conv1", pads=[1, 1, 1, 1]),
             node("Relu", ["c1"], ["r1"], "relu1"),
             node("Conv", ["r1", "w2", "b2"], ["c2"], "conv2", pads=[1, 1, 1, 1], strides=[2, 2]),
             node("Sigmoid", ["c2"], ["s2"], "sigmoid2"),
             node("Mul", ["c2", "s2"], ["a2"], "swish2")]
    last = "a2"
    if overflow:  # harmless in FP32, beyond FP16's 65504 wherever |a2| > 2.2
        nodes += [node("Mul", ["a2", "big"], ["up"], "scale_up"),
                  node("Div", ["up", "big"], ["down"], "scale_down")]
        last = "down"
    nodes += [node("Conv", [last, "w3"], ["c3"], "conv3"),
              node("GlobalAveragePool", ["c3"], ["p3"], "pool3"),
              node("Flatten", ["p3"], ["f3"], "flatten3"),
              node("Gemm", ["f3", "fc"], ["logits"], "fc", transB=1)]
    graph = helper.make_graph(
        nodes, "cnn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, 16, 16])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["n", 10])],
        [numpy_helper.from_array(value, name) for name, value in weights.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def save(model, path: Path) -> Path:
    import onnx

    onnx.save(model, str(path))
    return path


def perturb(model, initializer: str, factor: float = 1.01):
    """Scale one weight tensor: a 1% error of its magnitude at factor 1.01."""
    from onnx import numpy_helper

    for tensor in model.graph.initializer:
        if tensor.name == initializer:
            value = numpy_helper.to_array(tensor) * np.float32(factor)
            tensor.CopyFrom(numpy_helper.from_array(value.astype(np.float32), tensor.name))
            return model
    raise KeyError(initializer)


@pytest.fixture(scope="module")
def feed() -> dict[str, np.ndarray]:
    return {"x": np.random.default_rng(1).normal(size=(2, 3, 16, 16)).astype(np.float32)}


@pytest.fixture
def clean(tmp_path) -> Path:
    return save(cnn(), tmp_path / "clean.onnx")


def test_clean_graph_reports_nothing(tmp_path, clean, feed):
    copy = save(cnn(), tmp_path / "copy.onnx")
    result = localize(copy, feed, FP32, reference_model_path=clean)
    assert not result.found and result.tensors == ()
    assert result.compared == 9  # every node output: all names match between the two
    assert "no intermediate tensor" in result.summary()


@pytest.mark.parametrize("chunk_size", [1, 4, 64])
def test_perturbed_conv_weight_is_named_first(tmp_path, clean, feed, chunk_size):
    faulty = save(perturb(cnn(), "w2"), tmp_path / "faulty.onnx")
    result = localize(faulty, feed, FP32, reference_model_path=clean, chunk_size=chunk_size)
    first = result.tensors[0]
    assert (first.tensor, first.node, first.op_type) == ("c2", "conv2", "Conv")
    assert first.max_abs_error > first.tolerance
    assert first.suspects == ("conv2 (Conv)",)  # its input r1 agreed
    assert "conv2" in result.summary()
    # Everything upstream agreed; the report stops after `limit` tensors.
    assert len(result.tensors) == 3 and result.tensors[1].tensor == "s2"


@pytest.mark.parametrize("node_name, replacement", [("relu1", "LeakyRelu"),
                                                    ("sigmoid2", "HardSigmoid")])
def test_swapped_activation_is_named_first(tmp_path, clean, feed, node_name, replacement):
    model = cnn()
    target = next(n for n in model.graph.node if n.name == node_name)
    target.op_type = replacement  # the default alpha of each keeps the graph valid
    faulty = save(model, tmp_path / "swapped.onnx")
    result = localize(faulty, feed, FP32, reference_model_path=clean)
    assert result.tensors[0].node == node_name
    assert result.tensors[0].op_type == replacement


def test_fp16_overflow_is_found_through_a_runner(tmp_path, feed):
    """The suspect run is a real Polygraphy runner on the marked FP16 graph."""
    from onnxruntime.transformers.float16 import convert_float_to_float16
    from polygraphy.backend.onnxrt import OnnxrtRunner, SessionFromOnnx

    def runner(path: Path) -> OnnxrtRunner:
        return OnnxrtRunner(SessionFromOnnx(str(path)))

    for overflow in (False, True):
        fp32 = save(cnn(overflow), tmp_path / f"fp32_{overflow}.onnx")
        fp16 = save(convert_float_to_float16(cnn(overflow), keep_io_types=True),
                    tmp_path / f"fp16_{overflow}.onnx")
        test = runner_tensors(fp16, feed, runner, description="ORT via Polygraphy, FP16")
        result = localize_sources(test, onnx_tensors(fp32, feed), FP16)
        if not overflow:
            assert not result.found, result.summary()
            assert result.compared >= 8
        else:
            first = result.tensors[0]
            assert (first.node, first.op_type) == ("scale_up", "Mul")
            assert first.max_abs_error == np.inf


def test_localize_needs_a_reference(clean, feed):
    with pytest.raises(UsageError, match="compare against"):
        localize(clean, feed, FP32)


def test_unreadable_model_is_a_usage_error(tmp_path, feed):
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a protobuf at all")
    with pytest.raises(UsageError, match="broken.onnx"):
        localize(broken, feed, FP32, reference_model_path=broken)


# ---- a real paddle2onnx export, compared with Paddle's own intermediate values ---------------

@pytest.fixture(scope="module")
def paddle_export(tmp_path_factory) -> dict:
    """A small Paddle CNN saved with jit.save, converted by paddle2onnx, simplified by onnxsim."""
    import onnx
    import onnxsim
    import paddle
    import paddle2onnx
    from paddle import nn

    folder = tmp_path_factory.mktemp("paddle_cnn")
    paddle.seed(0)

    class Net(nn.Layer):
        def __init__(self):
            super().__init__()
            self.conv1, self.bn1 = nn.Conv2D(3, 8, 3, padding=1), nn.BatchNorm2D(8)
            self.conv2 = nn.Conv2D(8, 16, 3, stride=2, padding=1)
            self.conv3 = nn.Conv2D(16, 16, 1)
            self.fc = nn.Linear(16, 10)

        def forward(self, x):
            x = nn.functional.relu(self.bn1(self.conv1(x)))
            x = nn.functional.swish(self.conv2(x))
            x = nn.functional.relu(self.conv3(x))
            return self.fc(nn.functional.adaptive_avg_pool2d(x, 1).flatten(1))

    net = Net()
    # Non-trivial statistics and biases, so that a fused Conv+BatchNorm or Conv+bias differs
    # from the plain conv (at Paddle's initial values both would be identities).
    rng = np.random.default_rng(0)
    for tensor in (net.bn1._mean, net.bn1.bias, net.conv1.bias, net.conv2.bias, net.conv3.bias):
        tensor.set_value(rng.normal(0, 0.5, tensor.shape).astype(np.float32))
    for tensor in (net.bn1._variance, net.bn1.weight):
        tensor.set_value(rng.uniform(0.5, 2, tensor.shape).astype(np.float32))
    net.eval()
    spec = [paddle.static.InputSpec([None, 3, 16, 16], "float32", "x")]
    paddle.jit.save(net, str(folder / "inference"), input_spec=spec)
    paddle2onnx.export(str(folder / "inference.json"), str(folder / "inference.pdiparams"),
                       str(folder / "model.onnx"), opset_version=13)
    simplified, ok = onnxsim.simplify(onnx.load(str(folder / "model.onnx")))
    assert ok
    onnx.save(simplified, str(folder / "simplified.onnx"))
    return {"folder": folder, "program": folder / "inference.json",
            "conv2_weight": net.conv2.weight.name}  # e.g. "conv2d_1.w_0"


@pytest.mark.parametrize("graph", ["model.onnx", "simplified.onnx"])
def test_clean_export_agrees_with_paddle_intermediates(paddle_export, feed, graph):
    result = localize(paddle_export["folder"] / graph, feed, FP32,
                      paddle_program=paddle_export["program"])
    assert not result.found, result.summary()
    assert result.compared >= 3 and "Paddle" in result.reference


def test_edited_export_is_localized_against_paddle(tmp_path, paddle_export, feed):
    import onnx

    weight = paddle_export["conv2_weight"]
    model = perturb(onnx.load(str(paddle_export["folder"] / "model.onnx")), weight)
    conv = next(n for n in model.graph.node if weight in n.input)
    faulty = save(model, tmp_path / "edited.onnx")
    result = localize(faulty, feed, FP32, paddle_program=paddle_export["program"])
    first = result.tensors[0]
    # The conv's own output feeds a bias Add in ONNX but not in Paddle's program, so the
    # first comparable tensor lies just after it, and the conv heads the suspects.
    assert first.suspects[0].startswith(f"{conv.name} (Conv, Paddle {weight.split('.')[0]}")
    assert first.max_abs_error > first.tolerance
    assert first.paddle_layer and first.tensor.startswith("p2o.")


def test_edited_simplified_export_is_localized_against_paddle(tmp_path, paddle_export, feed):
    """onnxsim fused Conv+BatchNorm and renamed weights: names match only partly."""
    import onnx

    model = onnx.load(str(paddle_export["folder"] / "simplified.onnx"))
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    target = convs[1]
    faulty = save(perturb(model, target.input[1]), tmp_path / "edited.onnx")
    result = localize(faulty, feed, FP32, paddle_program=paddle_export["program"])
    assert result.found
    assert result.tensors[0].suspects[0].startswith(f"{target.name} (Conv")


def test_graphs_with_external_data_are_marked_without_copying_weights(tmp_path, clean, feed):
    """Big models keep their weights beside the graph; marked copies must still find them."""
    import onnx

    folder = tmp_path / "external"
    folder.mkdir()
    onnx.save(perturb(cnn(), "w2"), str(folder / "model.onnx"), save_as_external_data=True,
              all_tensors_to_one_file=True, location="model.onnx.data", size_threshold=0)
    assert (folder / "model.onnx.data").stat().st_size > 0
    result = localize(folder / "model.onnx", feed, FP32, reference_model_path=clean)
    assert result.tensors[0].node == "conv2" and result.compared >= 3
    assert sorted(p.name for p in folder.iterdir()) == ["model.onnx", "model.onnx.data"]


def test_tensor_names_with_wildcard_characters_are_marked_as_themselves(tmp_path, feed):
    """Polygraphy's ModifyOutputs reads *, ? and [ as patterns: names must match only themselves."""
    def renamed(model):
        names = {"c2": "c2[0]*", "s2": "s?2", "r1": "r1[x]"}
        for node in model.graph.node:
            node.input[:] = [names.get(n, n) for n in node.input]
            node.output[:] = [names.get(n, n) for n in node.output]
        return model

    clean = save(renamed(cnn()), tmp_path / "clean.onnx")
    copy = save(renamed(cnn()), tmp_path / "copy.onnx")
    agreed = localize(copy, feed, FP32, reference_model_path=clean, chunk_size=2)
    assert agreed.compared == 9 and not agreed.found
    faulty = save(renamed(perturb(cnn(), "w2")), tmp_path / "faulty.onnx")
    result = localize(faulty, feed, FP32, reference_model_path=clean, chunk_size=2)
    assert [t.tensor for t in result.tensors] == ["c2[0]*", "s?2", "a2"]
    assert result.tensors[0].suspects == ("conv2 (Conv)",)
