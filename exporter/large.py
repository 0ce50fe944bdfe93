"""Export of networks whose ONNX passes protobuf's 2 GB limit, in consecutive pieces.

paddle2onnx 2.1 serialises the whole ModelProto in memory: past 2 GB it logs an error and
returns nothing (ResNeXt101_32x48d_wsl is 3.3 GB in FP32). Here the network is cut into
consecutive pieces of at most PIECE_BYTES of weights (the zoo model says where it can be cut:
``model.pieces()``), each piece is jit-saved, converted and simplified on its own (each stays
far below the limit), its weights are appended to one external data file at once, and the
pieces are joined into one graph whose tensors keep a per-piece prefix. The joined graph is
checked against Paddle on the whole network like any export.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from core.errors import ExportError
from core.graphs import as_raw

if TYPE_CHECKING:
    import onnx
    from paddle import nn

PIECE_BYTES = 1 << 30  # weights per piece: paddle2onnx and onnxsim each hold a few copies


def convert_in_pieces(layer: nn.Layer, sample: np.ndarray, *, input_name: str,
                      output_name: str, opset: int, folder: Path, data_file: str,
                      convert: Callable[[Path, Path, int, Path], onnx.ModelProto],
                      simplify: Callable[[onnx.ModelProto], onnx.ModelProto] | None,
                      ) -> tuple[onnx.ModelProto, int]:
    """One graph for ``layer`` whose weights are already in ``folder/data_file``.

    ``convert`` and ``simplify`` are the exporter's own paddle2onnx and onnxsim steps;
    ``sample`` (one input) gives each piece its input shape. Returns the joined graph and
    the node count before simplification.
    """
    import paddle

    from exporter.zoo.chain import Chain

    if not hasattr(layer, "pieces"):
        raise ExportError(f"{type(layer).__name__} cannot be cut into pieces, and its ONNX "
                          "would pass protobuf's 2 GB limit")
    groups = _group(layer.pieces(), PIECE_BYTES)
    joined: onnx.ModelProto | None = None
    nodes_before = 0
    x = paddle.to_tensor(sample[:1])
    for index, group in enumerate(groups):
        piece = Chain(group)
        piece.eval()
        with tempfile.TemporaryDirectory(dir=folder) as tmp:
            spec = paddle.static.InputSpec([None, *x.shape[1:]], "float32", name="x")
            paddle.jit.save(piece, f"{tmp}/piece", input_spec=[spec])
            graph = convert(Path(tmp) / "piece.json", Path(tmp) / "piece.pdiparams", opset,
                            Path(tmp) / "paddle2onnx.log")
        with paddle.no_grad():
            x = piece(x)
        nodes_before += len(graph.graph.node)
        constants_to_initializers(graph)
        if simplify is not None:
            graph = simplify(graph)
        last = index == len(groups) - 1
        _rename(graph, f"piece{index}/",
                input_name if index == 0 else f"piece{index - 1}/output",
                output_name if last else f"piece{index}/output")
        _externalise(graph, folder, data_file)
        joined = graph if joined is None else _append(joined, graph)
    assert joined is not None
    return joined, nodes_before


def _group(pieces: list[nn.Layer], limit: int) -> list[list[nn.Layer]]:
    """Consecutive pieces packed into groups of at most ``limit`` bytes of weights."""
    groups: list[list[nn.Layer]] = [[]]
    size = 0
    for piece in pieces:
        weight = sum(int(np.prod(p.shape)) * 4 for p in piece.parameters())
        if groups[-1] and size + weight > limit:
            groups.append([])
            size = 0
        groups[-1].append(piece)
        size += weight
    return groups


def constants_to_initializers(graph: onnx.ModelProto) -> None:
    """paddle2onnx emits weights as Constant nodes; initializers can live in external data."""
    keep = []
    for node in graph.graph.node:
        value = next((a.t for a in node.attribute if a.name == "value"), None)
        if node.op_type == "Constant" and value is not None:
            value.name = node.output[0]
            graph.graph.initializer.append(value)
        else:
            keep.append(node)
    del graph.graph.node[:]
    graph.graph.node.extend(keep)


def _rename(graph: onnx.ModelProto, prefix: str, input_name: str, output_name: str) -> None:
    """Prefix every name of one piece; its input and output take the names that join it."""
    interface = {graph.graph.input[0].name: input_name, graph.graph.output[0].name: output_name}

    def name(old: str) -> str:
        return interface.get(old, f"{prefix}{old}" if old else old)

    for node in graph.graph.node:
        node.name = f"{prefix}{node.name}"
        node.input[:] = [name(n) for n in node.input]
        node.output[:] = [name(n) for n in node.output]
    for value in [*graph.graph.input, *graph.graph.output, *graph.graph.value_info,
                  *graph.graph.initializer]:
        value.name = name(value.name)
    for value in (graph.graph.input[0], graph.graph.output[0]):
        batch = value.type.tensor_type.shape.dim[0]
        if not batch.HasField("dim_value"):
            batch.dim_param = "batch"


def _externalise(graph: onnx.ModelProto, folder: Path, data_file: str) -> None:
    """Append the piece's weights to the shared data file and drop them from memory."""
    from onnx.external_data_helper import save_external_data, set_external_data

    for tensor in graph.graph.initializer:
        as_raw(tensor)
        if len(tensor.raw_data) >= 1024:
            set_external_data(tensor, data_file)
            save_external_data(tensor, str(folder))
            tensor.ClearField("raw_data")


def _append(joined: onnx.ModelProto, piece: onnx.ModelProto) -> onnx.ModelProto:
    joined.graph.node.extend(piece.graph.node)
    joined.graph.initializer.extend(piece.graph.initializer)
    joined.graph.value_info.extend([*joined.graph.output, *piece.graph.value_info])
    del joined.graph.output[:]
    joined.graph.output.extend(piece.graph.output)
    return joined
