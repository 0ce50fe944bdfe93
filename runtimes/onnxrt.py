"""ONNX Runtime runners: CPU, CUDA (I/O binding + CUDA graphs) and the TensorRT EP.

The timing path is I/O binding: ``bind`` copies the inputs once into OrtValues on the
runner's device and pre-allocates the outputs there; ``run_bound`` is one
``run_with_iobinding``, which returns after the device finished. On CUDA each input shape
gets its own binding and CUDA-graph id (ORT replays a captured graph only with the same
buffer addresses and shapes), so changing batch size never replays a stale graph.
``infer`` on the GPU runners goes through the same bindings, so validation checks the very
path that is timed.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from core.errors import CrossrtError, DependencyError, RuntimeFault, UsageError, first_line
from core.spec import FP16, FP32, Precision
from runtimes.base import InputSpec, Runner
from runtimes.probe import cpu_name, find_library, gpus, has_files, spec_dirs
from runtimes.trt_backends import TENSORRT

INSTALL_ORT_GPU = "pip uninstall -y onnxruntime && pip install onnxruntime-gpu"
INSTALL_TRT = TENSORRT.install

GRAPH_OPTIMIZATION = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC",
                      "extended": "ORT_ENABLE_EXTENDED", "all": "ORT_ENABLE_ALL"}
CUDNN_CONV_ALGO_SEARCH = ("EXHAUSTIVE", "HEURISTIC", "DEFAULT")

def _load_error(path: Any, error: BaseException) -> CrossrtError:
    """ORT refusing a graph that onnx's checker accepts is a runtime fault; refusing one the
    checker rejects (truncated, edited, not ONNX) is bad input."""
    import onnx

    try:
        onnx.checker.check_model(str(path))  # by path: a graph with external data too
    except Exception:  # protobuf, checker and OS errors all mean "not a valid graph"
        return UsageError(f"ONNX Runtime cannot load {path}: {first_line(error)}")
    return RuntimeFault(f"ONNX Runtime cannot load {path}, a valid ONNX graph: "
                        f"{first_line(error)}")


def ort_provider_library(provider: str) -> bool:
    """Whether the installed onnxruntime ships this execution provider's library (the CPU
    wheel has no CUDA one)."""
    capi = [d / "capi" for d in spec_dirs("onnxruntime")]
    return has_files(capi, f"libonnxruntime_providers_{provider}.so",
                     f"onnxruntime_providers_{provider}.dll")


def ort_dtype(type_name: str) -> np.dtype:
    """The NumPy dtype of an ONNX Runtime type name (``tensor(float)``), by Polygraphy's own
    mapping of ONNX Runtime's types; a UsageError for one without a numeric NumPy dtype."""
    from polygraphy.datatype import DataType
    from polygraphy.exception import PolygraphyException
    from polygraphy.logger import G_LOGGER

    with G_LOGGER.verbosity(G_LOGGER.CRITICAL + 1):  # the one-line error below says it all
        try:
            dtype = DataType.to_dtype(DataType.from_dtype(type_name, "onnxruntime"), "numpy")
        except PolygraphyException:  # a type NumPy has no dtype for (bfloat16, float8)
            dtype = None
    if not isinstance(dtype, np.dtype) or dtype.kind not in "biuf":
        raise UsageError(f"unsupported ONNX tensor type {type_name}")
    return dtype


def graph_precision(path: Any) -> Precision:
    """'fp16' when most floating-point weights of the ONNX graph are FP16, else 'fp32'."""
    import onnx

    from core.graphs import read_onnx

    counts = dict.fromkeys(Precision, 0)
    tensor = onnx.TensorProto
    model = read_onnx(path)
    for init in model.graph.initializer:
        size = int(np.prod(init.dims)) if init.dims else 1
        if init.data_type == tensor.FLOAT16:
            counts[FP16] += size
        elif init.data_type == tensor.FLOAT:
            counts[FP32] += size
    return FP16 if counts[FP16] > counts[FP32] else FP32


@dataclass
class _Binding:
    """One I/O binding: inputs and outputs live in OrtValues whose addresses never change."""

    binding: Any
    inputs: dict[str, Any]
    outputs: dict[str, Any]  # preallocated; empty when ORT allocates (shape not inferable)
    run_options: Any
    graph: bool


class OnnxRuntimeRunner(Runner):
    """ONNX Runtime with the CPU execution provider."""

    kind: ClassVar[str] = "onnxruntime"
    description: ClassVar[str] = "ONNX Runtime, CPU execution provider"
    title: ClassVar[str] = "ONNX Runtime CPU"
    distributions: ClassVar[tuple[str, ...]] = ("onnxruntime", "onnxruntime-gpu")
    localizable: ClassVar[bool] = True
    has_fp16_graph: ClassVar[bool] = True
    runs_fp16: ClassVar[bool] = True
    runs_graph_as_written: ClassVar[bool] = True
    reference_rank: ClassVar[int | None] = 1
    timing_rank: ClassVar[int | None] = 2
    device: ClassVar[str] = "cpu"

    @classmethod
    def unavailable_reason(cls) -> str | None:
        return None if spec_dirs("onnxruntime") else \
            "ONNX Runtime is not installed: pip install onnxruntime"

    @classmethod
    def device_note(cls) -> str:
        return f" on CPU ({cpu_name()})" if cls.device == "cpu" else super().device_note()
    # spinning: None keeps ORT's default (idle intra-op threads spin); False frees the cores
    # for other work in the same process (crossrt accuracy's decoding threads).
    defaults: ClassVar[dict[str, Any]] = {"threads": None, "graph_optimization": "all",
                                          "fp16": False, "spinning": None}

    def __init__(self, path: Any, **options: Any):
        super().__init__(path, **options)
        if self.options["graph_optimization"] not in GRAPH_OPTIMIZATION:
            raise UsageError(f"graph_optimization must be one of {', '.join(GRAPH_OPTIMIZATION)}, "
                             f"got {self.options['graph_optimization']!r}")
        self._session: Any = None
        self._slots: dict[tuple[Any, ...], _Binding] | None = None
        self._last_slot: _Binding | None = None
        self._graph_ids: Any = None

    # -- session ------------------------------------------------------------------------
    def _providers(self) -> list[Any]:
        return ["CPUExecutionProvider"]

    def _session_options(self, ort: Any) -> Any:
        options = ort.SessionOptions()
        options.graph_optimization_level = getattr(
            ort.GraphOptimizationLevel, GRAPH_OPTIMIZATION[self.options["graph_optimization"]])
        if self.options["threads"]:
            options.intra_op_num_threads = int(self.options["threads"])
        if self.options["spinning"] is not None:
            options.add_session_config_entry("session.intra_op.allow_spinning",
                                             "1" if self.options["spinning"] else "0")
        options.log_severity_level = 3  # errors only: library code does not chatter
        return options

    def _load(self) -> None:
        import onnxruntime as ort

        try:
            self._session = ort.InferenceSession(str(self.path), self._session_options(ort),
                                                 providers=self._providers())
        except Exception as error:  # ORT raises its own pybind types (InvalidGraph, Fail...)
            raise _load_error(self.path, error) from error
        active = self._session.get_providers()[0]
        if active != self._providers_names()[0]:
            self._session = None
            raise DependencyError(self._fallback_message(active))
        self._slots, self._graph_ids = {}, itertools.count(1)  # graph id 0 is ORT's own

    def _providers_names(self) -> list[str]:
        return [p if isinstance(p, str) else p[0] for p in self._providers()]

    def _fallback_message(self, active: str) -> str:
        return f"ONNX Runtime ran {self.path} on {active} instead of {self._providers_names()[0]}"

    def _unload(self) -> None:
        self._session = self._slots = self._last_slot = self._graph_ids = None

    def _inputs(self) -> dict[str, InputSpec]:
        return {node.name: InputSpec(node.name, ort_dtype(node.type),
                                     tuple(d if isinstance(d, int) and d > 0 else None
                                           for d in node.shape))
                for node in self._session.get_inputs()}

    def _run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        names = [node.name for node in self._session.get_outputs()]
        with self._faults():
            return dict(zip(names, self._session.run(names, feed)))

    @contextlib.contextmanager
    def _faults(self) -> Iterator[None]:
        """Inputs were checked before: a failure inside ORT is its own (a RuntimeFault)."""
        try:
            yield
        except MemoryError:
            raise
        except Exception as error:  # ORT's own pybind error types
            raise RuntimeFault(f"ONNX Runtime failed running {self.path.name}: "
                               f"{first_line(error)}") from error

    # -- I/O binding (the timing path) ---------------------------------------------------
    def _bind(self, feed: dict[str, np.ndarray]) -> None:
        self._last_slot = self._slot("bound", feed)

    def _run_bound(self) -> None:
        assert self._last_slot is not None
        self._run_slot(self._last_slot)

    def _fetch_bound(self) -> dict[str, np.ndarray]:
        assert self._last_slot is not None
        return self._fetch(self._last_slot)

    def _use_cuda_graph(self) -> bool:
        return False

    def _slot(self, purpose: str, feed: dict[str, np.ndarray]) -> _Binding:
        """The binding for this purpose and these shapes, with ``feed`` copied into it."""
        assert self._slots is not None
        key = (purpose, *sorted((n, a.shape, a.dtype.str) for n, a in feed.items()))
        slot = self._slots.get(key)
        if slot is None:
            slot = self._slots[key] = self._new_slot(feed)
        else:
            for name, array in feed.items():
                slot.inputs[name].update_inplace(np.ascontiguousarray(array))
        return slot

    def _new_slot(self, feed: dict[str, np.ndarray]) -> _Binding:
        import onnxruntime as ort

        device, device_id = self.device, self._device_id()
        # A copy: on the CPU an OrtValue wraps the array's memory, which the caller owns.
        inputs = {name: ort.OrtValue.ortvalue_from_numpy(np.array(array, copy=True), device,
                                                         device_id)
                  for name, array in feed.items()}
        binding = self._session.io_binding()
        for name, value in inputs.items():
            binding.bind_ortvalue_input(name, value)
        symbols = {dim: size for node in self._session.get_inputs()
                   for dim, size in zip(node.shape, feed[node.name].shape) if isinstance(dim, str)}
        outputs = {}
        for node in self._session.get_outputs():
            shape = [symbols.get(d) if isinstance(d, str) else d for d in node.shape]
            if all(isinstance(d, int) and d >= 0 for d in shape):
                outputs[node.name] = ort.OrtValue.ortvalue_from_shape_and_type(
                    shape, ort_dtype(node.type), device, device_id)
                binding.bind_ortvalue_output(node.name, outputs[node.name])
            else:  # ORT allocates; its addresses may move, so no CUDA graph for this slot
                binding.bind_output(node.name, device, device_id)
        graph = self._use_cuda_graph() and len(outputs) == len(self._session.get_outputs())
        run_options = ort.RunOptions()
        if self._use_cuda_graph():
            run_options.add_run_config_entry("gpu_graph_id",
                                             str(next(self._graph_ids) if graph else -1))
        return _Binding(binding, inputs, outputs, run_options, graph)

    def _run_slot(self, slot: _Binding) -> None:
        with self._faults():
            self._session.run_with_iobinding(slot.binding, slot.run_options)

    def _fetch(self, slot: _Binding) -> dict[str, np.ndarray]:
        if len(slot.outputs) == len(self._session.get_outputs()):
            return {name: np.array(value.numpy()) for name, value in slot.outputs.items()}
        names = [node.name for node in self._session.get_outputs()]
        return {name: np.array(value.numpy())
                for name, value in zip(names, slot.binding.get_outputs())}

    def _device_id(self) -> int:
        return 0

    # -- provenance ----------------------------------------------------------------------
    def _describe(self) -> dict[str, Any]:
        import onnxruntime as ort

        session = self._session
        return {"versions": {"onnxruntime": ort.__version__},
                "providers": session.get_providers() if session else self._providers_names(),
                "device": self._device_name(),
                "precision": graph_precision(self.path),
                "threads": self.options["threads"] or "ORT default (physical cores)",
                "graph_optimization": self.options["graph_optimization"]}

    def _device_name(self) -> str:
        return f"CPU: {cpu_name()}"


class OnnxRuntimeCudaRunner(OnnxRuntimeRunner):
    """ONNX Runtime's CUDA EP, tuned: I/O binding, CUDA graphs, cuDNN search, NHWC."""

    kind: ClassVar[str] = "onnxruntime-cuda"
    description: ClassVar[str] = "ONNX Runtime, CUDA execution provider (I/O binding, CUDA graphs)"
    title: ClassVar[str] = "ONNX Runtime CUDA"
    distributions: ClassVar[tuple[str, ...]] = ("onnxruntime-gpu", "onnxruntime")
    runs_graph_as_written: ClassVar[bool] = False
    reference_rank: ClassVar[int | None] = None
    timing_rank: ClassVar[int | None] = 1
    device: ClassVar[str] = "cuda"

    @classmethod
    def unavailable_reason(cls) -> str | None:
        if reason := OnnxRuntimeRunner.unavailable_reason():
            return f"{reason}-gpu"
        if not ort_provider_library("cuda"):
            return ("the installed onnxruntime is the CPU-only build (no CUDA execution provider): "
                    + INSTALL_ORT_GPU)
        found, why = gpus()
        if not found:
            return why
        import onnxruntime  # only reached on a machine with a GPU and a GPU build's files

        if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
            return ("onnxruntime does not list CUDAExecutionProvider (two builds installed over "
                    "each other?): " + INSTALL_ORT_GPU)
        return None
    defaults: ClassVar[dict[str, Any]] = {
        **OnnxRuntimeRunner.defaults, "device_id": 0, "cuda_graph": True,
        "cudnn_conv_algo_search": "EXHAUSTIVE", "prefer_nhwc": True,
        "tf32": False}  # off: an FP32 graph then runs in FP32, as labelled

    def __init__(self, path: Any, **options: Any):
        super().__init__(path, **options)
        if self.options["cudnn_conv_algo_search"] not in CUDNN_CONV_ALGO_SEARCH:
            raise UsageError("cudnn_conv_algo_search must be one of "
                             f"{', '.join(CUDNN_CONV_ALGO_SEARCH)}")
        self._graph_refused: str | None = None  # why ORT would not capture CUDA graphs

    def _cuda_options(self) -> dict[str, str]:
        return {"device_id": str(self.options["device_id"]),
                "cudnn_conv_algo_search": self.options["cudnn_conv_algo_search"],
                "enable_cuda_graph": "1" if self._use_cuda_graph() else "0",
                "prefer_nhwc": "1" if self.options["prefer_nhwc"] else "0",
                "use_tf32": "1" if self.options["tf32"] else "0"}

    def _providers(self) -> list[Any]:
        return [("CUDAExecutionProvider", self._cuda_options()), "CPUExecutionProvider"]

    def _load(self) -> None:
        import onnxruntime as ort

        if hasattr(ort, "preload_dlls"):  # CUDA/cuDNN from the nvidia-* wheels (e.g. PyTorch's)
            with contextlib.suppress(Exception):
                ort.preload_dlls()
        try:
            super()._load()
        except (UsageError, RuntimeFault) as error:
            # ORT refuses CUDA graphs when some node is not on the CUDA EP: run without them,
            # and say so in describe(), rather than not at all.
            if not (self._use_cuda_graph() and "graph" in str(error).lower()):
                raise
            self._graph_refused = str(error)
            super()._load()

    def _unload(self) -> None:
        super()._unload()
        self._graph_refused = None

    def _fallback_message(self, active: str) -> str:
        return ("ONNX Runtime could not start its CUDA execution provider (it fell back to "
                f"{active}): the CUDA/cuDNN libraries that onnxruntime-gpu needs are missing; "
                "install them (e.g. pip install 'onnxruntime-gpu[cuda,cudnn]') or "
                f"{INSTALL_ORT_GPU}")

    def _use_cuda_graph(self) -> bool:
        return bool(self.options["cuda_graph"]) and self._graph_refused is None

    def _device_id(self) -> int:
        return int(self.options["device_id"])

    def _run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        slot = self._slot("infer", feed)
        self._run_slot(slot)
        return self._fetch(slot)

    def _device_name(self) -> str:
        found, reason = gpus()
        index = self._device_id()
        return found[index]["name"] if index < len(found) else reason

    def _describe(self) -> dict[str, Any]:
        described = super()._describe()
        described.pop("threads")
        found, _ = gpus()
        index = self._device_id()
        gpu = found[index] if index < len(found) else {}
        if self.options["tf32"] and described["precision"] == FP32:
            described["precision"] = "tf32"
        graph = ("on" if self._use_cuda_graph() else
                 f"off: {self._graph_refused}" if self._graph_refused else "off")
        return {**described, "gpu": gpu, "cuda_options": self._cuda_options(),
                "io_binding": True, "cuda_graph": graph,
                "cuda_graph_slots": sum(s.graph for s in (self._slots or {}).values())}


class OnnxRuntimeTrtRunner(OnnxRuntimeCudaRunner):
    """ONNX Runtime's TensorRT EP (FP16 switch, engine cache), CUDA EP for what TRT rejects."""

    kind: ClassVar[str] = "onnxruntime-trt"
    description: ClassVar[str] = "ONNX Runtime, TensorRT execution provider"
    title: ClassVar[str] = "ONNX Runtime TensorRT EP"
    timing_rank: ClassVar[int | None] = None
    has_fp16_graph: ClassVar[bool] = False  # the TensorRT EP builds FP16 from the FP32 graph

    @classmethod
    def unavailable_reason(cls) -> str | None:
        if reason := OnnxRuntimeCudaRunner.unavailable_reason():
            return reason
        if not ort_provider_library("tensorrt"):
            return "this onnxruntime build has no TensorRT execution provider: " + INSTALL_ORT_GPU
        if find_library("nvinfer", ("tensorrt_libs", "tensorrt")) is None:
            return "the TensorRT libraries (libnvinfer) are not installed: " + INSTALL_TRT
        return None
    defaults: ClassVar[dict[str, Any]] = {**OnnxRuntimeCudaRunner.defaults, "cuda_graph": False,
                                          "engine_cache_dir": None}

    def _providers(self) -> list[Any]:
        trt_options: dict[str, Any] = {"device_id": self.options["device_id"],
                                       "trt_fp16_enable": bool(self.options["fp16"])}
        if self.options["engine_cache_dir"]:
            trt_options.update(trt_engine_cache_enable=True, trt_timing_cache_enable=True,
                               trt_engine_cache_path=str(self.options["engine_cache_dir"]))
        if self.options["cuda_graph"]:
            trt_options["trt_cuda_graph_enable"] = True
        return [("TensorrtExecutionProvider", trt_options),
                ("CUDAExecutionProvider", self._cuda_options()), "CPUExecutionProvider"]

    def _cuda_options(self) -> dict[str, str]:
        return {**super()._cuda_options(), "enable_cuda_graph": "0"}  # the TRT EP owns graphs

    def _fallback_message(self, active: str) -> str:
        return ("ONNX Runtime could not start its TensorRT execution provider (it fell back to "
                f"{active}): the TensorRT libraries it needs are missing or of another version; "
                + INSTALL_TRT)

    def _describe(self) -> dict[str, Any]:
        described = super()._describe()
        if self.options["fp16"]:
            described["precision"] = "fp16 (TensorRT EP trt_fp16_enable)"
        return described
