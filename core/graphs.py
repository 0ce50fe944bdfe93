"""ONNX files, read and written one way: load, save (external data past protobuf's 2 GB),
check, simplify, convert to FP16, and the facts an ONNX file carries about its model.

Every ONNX file crossrt reads goes through :func:`read_onnx` (a truncated or foreign file is one
UsageError naming it); every graph it writes goes through :func:`save_onnx`. The exporter, the
engine builder (which converts an FP16 graph on the fly) and validation share these. onnx,
onnxsim and ONNX Runtime's converter are imported by the functions that use them.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core import files
from core.errors import ExportError, UsageError, first_line

if TYPE_CHECKING:
    import onnx

    from core.spec import ModelSpec

PROTOBUF_LIMIT = 2 << 30  # a ModelProto cannot be serialised past 2 GiB
# Ops kept in FP32 in the FP16 graph. Reductions over whole feature maps accumulate in the
# input precision in ONNX Runtime's FP16 kernels; keeping them FP32 costs two casts each.
FP16_FP32_OPS = ("GlobalAveragePool", "ReduceMean", "Softmax")


def read_onnx(path: str | Path) -> Any:
    """An ONNX file's graph, its external weights left on disk: the one reader of ONNX files
    (a truncated or foreign file is one UsageError naming it)."""
    import onnx
    from google.protobuf.message import DecodeError

    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{path} is {'a folder' if path.is_dir() else 'missing'}: give an "
                         "ONNX model file (export one with crossrt export-onnx MODEL)")
    if path.stat().st_size > PROTOBUF_LIMIT:  # past 2 GiB the weights are beside it, not in it
        raise UsageError(f"{path} is {path.stat().st_size >> 20:,} MiB: no ONNX file passes "
                         f"protobuf's {PROTOBUF_LIMIT >> 30} GiB (larger weights go to a .data "
                         "file beside it); is it an ONNX model?")
    try:
        return onnx.load(str(path), load_external_data=False)
    except (DecodeError, ValueError, RuntimeError, OSError) as exc:
        raise UsageError(f"{path} is not a readable ONNX model ({type(exc).__name__}: "
                         f"{first_line(exc, limit=120)}); export it again or "
                         "restore the file") from None


def save_onnx(graph: onnx.ModelProto, path: Path) -> None:
    """Save a graph, atomically (a private folder beside it, then a rename: an interrupted or
    failed save leaves nothing); past protobuf's 2 GiB the weights go to ``PATH.data``."""
    import onnx
    from onnx.external_data_helper import uses_external_data

    path = Path(path)
    with files.disk_errors(path), tempfile.TemporaryDirectory(
            dir=path.parent, prefix=files.temp_prefix(path.name)) as staging:
        staged = Path(staging) / path.name
        if any(uses_external_data(t) for t in graph.graph.initializer):
            onnx.save_model(graph, str(staged))  # weights already beside it (exporter.large)
        else:
            large = graph.ByteSize() >= PROTOBUF_LIMIT
            onnx.save_model(graph, str(staged), save_as_external_data=large,
                            all_tensors_to_one_file=True,
                            location=f"{path.name}.data" if large else None)
        for part in sorted(Path(staging).iterdir(), key=lambda p: p == staged):  # graph last
            os.replace(part, path.with_name(part.name))


def check_graph(graph: onnx.ModelProto | Path) -> None:
    """onnx.checker, full check; a saved graph with external data is checked by its path."""
    import onnx

    try:
        onnx.checker.check_model(graph if not isinstance(graph, Path) else str(graph),
                                 full_check=True)
    except onnx.checker.ValidationError as exc:
        raise ExportError(f"the converted ONNX model is invalid: {first_line(exc)}") from exc


def simplify(graph: onnx.ModelProto) -> onnx.ModelProto:
    import onnxsim

    try:
        simplified, ok = onnxsim.simplify(graph, check_n=0)  # verified below on real inputs
    except Exception as exc:
        raise ExportError(f"onnxsim failed ({exc}); export with --no-simplify") from exc
    if not ok:
        raise ExportError("onnxsim could not simplify the graph; export with --no-simplify")
    return simplified


def convert_fp16(onnx_path: str | Path, out_path: str | Path) -> Path:
    """An FP16 copy of an FP32 graph with FP32 inputs and outputs, some ops kept in FP32."""
    import onnx

    # Shape inference on the file, not in memory: a graph past protobuf's 2 GB (with external
    # data) cannot be serialised for onnx.shape_inference.infer_shapes.
    from google.protobuf.message import DecodeError
    from onnxruntime.transformers.float16 import convert_float_to_float16

    onnx_path = Path(onnx_path)
    with files.disk_errors(onnx_path.parent):
        fd, inferred = tempfile.mkstemp(dir=onnx_path.parent,
                                        prefix=files.temp_prefix(onnx_path.name), suffix=".shapes")
        os.close(fd)
        try:
            onnx.shape_inference.infer_shapes_path(str(onnx_path), inferred)
            graph = onnx.load(inferred)
        except (DecodeError, ValueError) as error:  # a short write: the disk filled up
            raise UsageError(f"cannot read back the shapes onnx inferred for {onnx_path.name} "
                             f"({first_line(error, named=True)}); check the free space in "
                             f"{onnx_path.parent} and run again") from None
        finally:
            Path(inferred).unlink(missing_ok=True)
    for tensor in graph.graph.initializer:
        # The converter turns float_data tensors element by element in Python (10 s for B0);
        # the same values as raw bytes take it half a second.
        as_raw(tensor)
    half = convert_float_to_float16(graph, keep_io_types=True, op_block_list=list(FP16_FP32_OPS),
                                    disable_shape_infer=True)
    out_path = Path(out_path)
    save_onnx(half, out_path)
    return out_path


def as_raw(tensor: Any) -> None:
    """Store a tensor's values as raw bytes (what external data and fast converters need)."""
    import onnx
    from onnx import numpy_helper

    if not tensor.HasField("raw_data") and tensor.data_location != onnx.TensorProto.EXTERNAL:
        tensor.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(tensor), tensor.name))


def set_metadata(graph: onnx.ModelProto, spec: ModelSpec, weights: dict[str, Any]) -> None:
    """Preprocessing facts in metadata_props, so the ONNX file alone says how to feed it."""
    facts = {"model": spec.name, "weights": weights.get("kind", "unknown"),
             **{k: json.dumps(v) if isinstance(v, list) else str(v)
                for k, v in spec.preprocessing().items()}}
    del graph.metadata_props[:]
    for key, value in facts.items():
        graph.metadata_props.add(key=key, value=value)


def io_records(graph: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """A graph's inputs (its weights left out) and outputs, as :func:`io_record`s."""
    weights = {t.name for t in graph.graph.initializer}
    return ([io_record(v) for v in graph.graph.input if v.name not in weights],
            [io_record(v) for v in graph.graph.output])


def fixed_dim(dim: int | str) -> int | None:
    """An io_record dim as a size: None when dynamic (a name such as ``batch``, or unknown)."""
    return dim if isinstance(dim, int) and dim > 0 else None


def io_record(value: Any) -> dict[str, Any]:
    from onnx import helper

    dims = [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]
    dtype = helper.tensor_dtype_to_np_dtype(value.type.tensor_type.elem_type)
    return {"name": value.name, "dtype": str(dtype), "shape": dims}
