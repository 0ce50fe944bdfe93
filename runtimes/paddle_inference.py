"""Paddle Inference runner: the exported Paddle program as the reference every runtime meets.

CPU with oneDNN (switchable) and a settable thread count; on a GPU build of Paddle, the GPU
with Paddle's TensorRT subgraph engine (``tensorrt=True``, FP16 with ``fp16=True``). A
predictor does not report its inputs' shapes before it ran, so they are read from the program
file itself: the ``data`` ops of a PIR ``inference.json`` or the ``feed`` targets of a legacy
``inference.pdmodel``.
"""

from __future__ import annotations

import contextlib
import json
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from core.errors import DependencyError, UsageError, first_line
from core.layout import PADDLE_PROGRAM_SUFFIXES
from core.spec import BATCH_SIZES, FP16, FP32
from runtimes.base import InputSpec, Runner
from runtimes.probe import cpu_name, gpus, spec_dirs, version

if TYPE_CHECKING:
    from core.layout import ExportDir

PADDLE_DTYPES = {"float32": np.float32, "float16": np.float16, "float64": np.float64,
                 "int64": np.int64, "int32": np.int32, "int8": np.int8, "uint8": np.uint8,
                 "bool": np.bool_}
LEGACY_DTYPES = {"FP32": "float32", "FP16": "float16", "FP64": "float64", "INT64": "int64",
                 "INT32": "int32", "INT8": "int8", "UINT8": "uint8", "BOOL": "bool"}


def program_inputs(program: Path) -> dict[str, InputSpec]:
    """Input name -> InputSpec from a Paddle inference program (PIR JSON or legacy protobuf)."""
    try:
        found = _pir_inputs(program) if program.suffix == ".json" else _legacy_inputs(program)
    except (OSError, ValueError, KeyError, TypeError, IndexError) as error:
        raise UsageError(f"cannot read the inputs of Paddle program {program}: {error}") from error
    if not found:
        raise UsageError(f"Paddle program {program} declares no inputs (no data/feed ops)")
    return {name: InputSpec(name, np.dtype(PADDLE_DTYPES[dtype]),
                            tuple(None if d < 0 else d for d in shape))
            for name, shape, dtype in found}


def _pir_inputs(program: Path) -> list[tuple[str, list[int], str]]:
    """PIR programs list ops per block; an input is a ``<dialect>.data`` op (name/shape/dtype)."""
    document = json.loads(program.read_text())
    found = []
    for region in document["program"]["regions"]:
        for block in region["blocks"]:
            for op in block["ops"]:
                if str(op.get("#", "")).rsplit(".", 1)[-1] != "data":
                    continue
                attrs = {a["N"]: a["AT"]["D"] for a in op.get("A", []) if "N" in a}
                found.append((attrs["name"], list(attrs["shape"]), attrs["dtype"]))
    return found


def _legacy_inputs(program: Path) -> list[tuple[str, list[int], str]]:
    """Legacy ProgramDesc: the outputs of ``feed`` ops in block 0 are the inputs."""
    from paddle.base.proto import framework_pb2

    desc = framework_pb2.ProgramDesc()  # type: ignore[attr-defined]  # generated code
    desc.ParseFromString(program.read_bytes())
    block = desc.blocks[0]
    variables = {var.name: var for var in block.vars}
    found = []
    for op in (op for op in block.ops if op.type == "feed"):
        name = next(o.arguments[0] for o in op.outputs if o.parameter == "Out")
        var_type = variables[name].type
        tensor = (var_type.dense_tensor if var_type.HasField("dense_tensor")
                  else var_type.lod_tensor).tensor
        dtype = framework_pb2.VarType.Type.Name(tensor.data_type)  # type: ignore[attr-defined]
        found.append((name, list(tensor.dims), LEGACY_DTYPES[dtype]))
    return found


@contextlib.contextmanager
def _sigterm_kept() -> Iterator[None]:
    """Paddle installs a SIGTERM handler of its own (it prints a C++ stack and aborts) when it
    is imported; crossrt's (clean up, exit 143) is put back afterwards. Meanwhile the main
    thread holds SIGTERM back, but a thread started earlier (e.g. by a BLAS library) may still
    take it during those seconds and end in Paddle's handler: that window remains."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGTERM)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    try:
        yield
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})


class PaddleRunner(Runner):
    """Paddle Inference on an exported program (``inference.json``/``.pdmodel`` +
    ``.pdiparams``)."""

    kind: ClassVar[str] = "paddle"
    model_suffixes: ClassVar[tuple[str, ...]] = PADDLE_PROGRAM_SUFFIXES
    description: ClassVar[str] = ("Paddle Inference on the exported Paddle program (CPU oneDNN; "
                                  "GPU + Paddle-TRT)")
    title: ClassVar[str] = "Paddle Inference"
    distributions: ClassVar[tuple[str, ...]] = ("paddlepaddle", "paddlepaddle-gpu")
    reference_rank: ClassVar[int | None] = 0  # the ground truth, where it is installed

    @classmethod
    def unavailable_reason(cls) -> str | None:
        dirs = spec_dirs("paddle")
        if not dirs:
            return ("Paddle is not installed: pip install 'paddlepaddle>=3.3,<3.4' "
                    "(or paddlepaddle-gpu)")
        if not any((d / "inference").is_dir() for d in dirs):
            return (f"the installed paddle ({dirs[0]}) has no paddle.inference: "
                    "reinstall paddlepaddle")
        return None

    @classmethod
    def device_note(cls) -> str:
        return " (GPU build)" if version("paddlepaddle-gpu") else " (CPU build)"

    @classmethod
    def export_options(cls, export: ExportDir) -> dict[str, Any]:
        """The exporter renames the ONNX outputs after the spec; Paddle keeps its own names.
        Same names on both sides let outputs be compared by name (Polygraphy's Comparator)."""
        from core.graphs import read_onnx

        graph = export.onnx_path()
        return {"output_names": [output.name for output in read_onnx(graph).graph.output]} \
            if graph.is_file() else {}

    @classmethod
    def export_file(cls, export: ExportDir, fp16: bool = False) -> Path:
        return export.paddle_program()

    @classmethod
    def target_file(cls, target: Path, fp16: bool = False) -> Path:
        """A program file, its prefix (``DIR/inference``), or a folder holding one."""
        from core.layout import find_paddle_program

        return find_paddle_program(target)

    defaults: ClassVar[dict[str, Any]] = {
        "device": "cpu", "threads": None, "onednn": True, "ir_optim": True,
        "gpu_id": 0, "gpu_memory_mb": 256, "tensorrt": False, "fp16": False,
        "trt_batch_range": BATCH_SIZES,  # min / opt / max batch of the Paddle-TRT profile
        "trt_workspace": 1 << 30,
        "output_names": None,  # rename outputs by position (create_runner: the ONNX graph's names)
    }

    def __init__(self, path: Any, **options: Any):
        super().__init__(path, **options)
        if self.options["device"] not in ("cpu", "gpu"):
            raise UsageError(f"device must be cpu or gpu, got {self.options['device']!r}")
        if self.options["fp16"] and not self.options["tensorrt"]:
            raise UsageError("Paddle Inference runs FP16 only through its TensorRT subgraph: "
                             "use device='gpu', tensorrt=True with fp16=True")
        if self.options["tensorrt"] and self.options["device"] != "gpu":
            raise UsageError("Paddle's TensorRT subgraph needs device='gpu'")
        self._predictor: Any = None
        self._handles: Any = None

    def _config(self) -> Any:
        import paddle
        import paddle.inference as pi

        from core.layout import PADDLE_PARAMS_SUFFIX

        config = pi.Config(str(self.path), str(self.path.with_suffix(PADDLE_PARAMS_SUFFIX)))
        options = self.options
        if options["device"] == "gpu":
            if not paddle.device.is_compiled_with_cuda():
                raise DependencyError("this Paddle is a CPU build: pip install paddlepaddle-gpu "
                                      "for device='gpu'")
            config.enable_use_gpu(int(options["gpu_memory_mb"]), int(options["gpu_id"]))
            if options["tensorrt"]:
                self._enable_tensorrt(config, pi)
        else:
            config.disable_gpu()
            switch = "enable" if options["onednn"] else "disable"  # "mkldnn" before Paddle 3
            (getattr(config, f"{switch}_onednn", None) or getattr(config, f"{switch}_mkldnn"))()
            if options["threads"]:
                config.set_cpu_math_library_num_threads(int(options["threads"]))
        config.switch_ir_optim(bool(options["ir_optim"]))
        config.disable_glog_info()
        return config

    def _enable_tensorrt(self, config: Any, pi: Any) -> None:
        low, opt, high = self.options["trt_batch_range"]
        precision = pi.PrecisionType.Half if self.options["fp16"] else pi.PrecisionType.Float32
        config.enable_tensorrt_engine(workspace_size=int(self.options["trt_workspace"]),
                                      max_batch_size=int(high), min_subgraph_size=3,
                                      precision_mode=precision, use_static=False,
                                      use_calib_mode=False)
        specs = program_inputs(self.path)
        shapes = [{n: [b if d is None else d for d in s.shape] for n, s in specs.items()}
                  for b in (low, high, opt)]
        config.set_trt_dynamic_shape_info(*shapes)  # min, max, opt: Paddle's argument order

    def _load(self) -> None:
        try:
            with _sigterm_kept():
                import paddle.inference as pi

                self._predictor = pi.create_predictor(self._config())
        except (RuntimeError, ValueError, OSError) as error:
            raise UsageError(f"Paddle Inference cannot load {self.path}: "
                             f"{first_line(error)}") from error
        self._handles = (
            {n: self._predictor.get_input_handle(n) for n in self._predictor.get_input_names()},
            {n: self._predictor.get_output_handle(n) for n in self._predictor.get_output_names()})
        renamed = self.options["output_names"]
        if renamed is not None and len(renamed) != len(self._handles[1]):
            raise UsageError(f"output_names {list(renamed)} do not match the "
                             f"{len(self._handles[1])} outputs of {self.path} "
                             f"({', '.join(self._handles[1])})")

    def _unload(self) -> None:
        self._predictor = self._handles = None

    def _inputs(self) -> dict[str, InputSpec]:
        specs = program_inputs(self.path)
        names = list(self._handles[0])
        if sorted(names) != sorted(specs):
            raise UsageError(f"Paddle program {self.path}: predictor inputs {names} differ from "
                             f"the program's data ops {sorted(specs)}")
        return {name: specs[name] for name in names}

    def _bind(self, feed: dict[str, np.ndarray]) -> None:
        for name, array in feed.items():
            handle = self._handles[0][name]
            handle.reshape(list(array.shape))
            handle.copy_from_cpu(array)

    def _run_bound(self) -> None:
        self._predictor.run()  # outputs stay in the predictor until fetched

    def _fetch_bound(self) -> dict[str, np.ndarray]:
        names = self.options["output_names"] or list(self._handles[1])
        return {name: handle.copy_to_cpu()
                for name, handle in zip(names, self._handles[1].values())}

    def _run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self._bind({name: np.ascontiguousarray(array) for name, array in feed.items()})
        self._predictor.run()
        return self._fetch_bound()

    def _describe(self) -> dict[str, Any]:
        import paddle

        options = self.options
        gpu = options["device"] == "gpu"
        found, reason = gpus()
        if gpu:
            device = found[options["gpu_id"]]["name"] if found else reason
        else:
            device = f"CPU: {cpu_name()}"
        precision = FP16 if options["fp16"] else FP32
        return {"versions": {"paddle": paddle.__version__},
                "device": device,
                "precision": f"{precision}" + (" (Paddle-TRT subgraphs)" if options["tensorrt"]
                                                else ""),
                "threads": None if gpu else (options["threads"] or "Paddle default"),
                "onednn": None if gpu else bool(options["onednn"])}
