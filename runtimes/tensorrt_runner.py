"""TensorRT runner: a serialized plan run by the backend that built it (full TensorRT >= 10 or
TensorRT-RTX, through the same Python API), after its header and sidecar say it can run here.

Device buffers are allocated once, at the largest shape any optimisation profile allows;
a feed picks the first profile whose range holds its shapes. ``bind`` copies the inputs to
the device once; ``run_bound`` is one ``execute_async_v3`` (or, with ``cuda_graph=True``, the
replay of a CUDA graph captured per input shape) followed by a stream synchronisation.
Memory and streams come from Polygraphy's CUDA wrapper; the CUDA-graph calls go through
the same CUDA runtime library with ctypes, so nothing beyond TensorRT and Polygraphy is needed.
This module is type-checked against ``tensorrt-stubs`` (tests/test_typecheck.py).
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from core.errors import RuntimeFault, UsageError
from core.layout import PLAN_SUFFIXES
from runtimes.base import InputSpec, Runner
from runtimes.engine_info import check_loadable, read_sidecar
from runtimes.probe import gpus
from runtimes.trt_backends import (
    BACKENDS,
    TENSORRT,
    TENSORRT_RTX,
    Backend,
    describe_backends,
    use_backend,
)

if TYPE_CHECKING:
    import tensorrt as trt

    from core.layout import ExportDir

_CAPTURE_THREAD_LOCAL = 1  # cudaStreamCaptureModeThreadLocal, as trtexec captures


def load_engine(path: Path) -> tuple[trt.ICudaEngine, Backend]:
    """Deserialize a plan with the backend that built it, after checking (from its header and
    sidecar, without deserialising) that this machine can load it."""
    found, _ = gpus()
    versions = {name: (b.version() or "unknown") if b.installed_reason() is None else None
                for name, b in BACKENDS.items()}
    backend = check_loadable(path, read_sidecar(path), versions, found[0] if found else None)
    use_backend(backend)  # one TensorRT logger per process: the build log's
    if TYPE_CHECKING:
        import tensorrt as trt
    else:
        trt = backend.load()
    from polygraphy.backend.trt import util as trt_util

    runtime = trt.Runtime(trt_util.get_trt_logger())
    engine = runtime.deserialize_cuda_engine(path.read_bytes())
    if engine is None:
        raise UsageError(f"{backend.title} {versions[backend.name]} cannot load {path} on "
                         f"{found[0]['name']}: it was built by another version or for another "
                         "GPU, or it is not an engine; rebuild it with crossrt build-engine")
    return engine, backend


def io_names(engine: trt.ICudaEngine, mode: trt.TensorIOMode) -> list[str]:
    names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
    return [name for name in names if engine.get_tensor_mode(name) == mode]


def profile_ranges(engine: trt.ICudaEngine, inputs: list[str]
                   ) -> list[dict[str, tuple[tuple[int, ...], tuple[int, ...]]]]:
    """Per optimisation profile: input name -> (min shape, max shape)."""
    ranges = []
    for profile in range(engine.num_optimization_profiles):
        shapes = {}
        for name in inputs:
            low, _, high = engine.get_tensor_profile_shape(name, profile)
            shapes[name] = (tuple(low[:]), tuple(high[:]))
        ranges.append(shapes)
    return ranges


def pick_profile(ranges: list[dict[str, tuple[tuple[int, ...], tuple[int, ...]]]],
                 shapes: dict[str, tuple[int, ...]]) -> int | None:
    """The first profile whose min..max range holds every input shape (None: no profile)."""
    def holds(low: tuple[int, ...], high: tuple[int, ...], shape: tuple[int, ...]) -> bool:
        return len(shape) == len(low) and all(lo <= d <= hi for lo, d, hi in zip(low, shape, high))

    for index, profile in enumerate(ranges):
        if all(holds(*profile[name], shape) for name, shape in shapes.items()):
            return index
    return None


class _CudaGraph:
    """A CUDA graph captured from one stream, replayed with ``launch`` (CUDA runtime via ctypes)."""

    def __init__(self, cudart: Any, stream: int, work: Callable[[], None]):
        self._cudart = cudart
        self._graph, self._exec = ctypes.c_void_p(), ctypes.c_void_p()
        self._check(cudart.cudaStreamBeginCapture(ctypes.c_void_p(stream), _CAPTURE_THREAD_LOCAL))
        try:
            work()
        finally:
            self._check(cudart.cudaStreamEndCapture(ctypes.c_void_p(stream),
                                                    ctypes.byref(self._graph)))
        self._check(cudart.cudaGraphInstantiateWithFlags(ctypes.byref(self._exec), self._graph,
                                                         ctypes.c_ulonglong(0)))

    def launch(self, stream: int) -> None:
        self._check(self._cudart.cudaGraphLaunch(self._exec, ctypes.c_void_p(stream)))

    def free(self) -> None:
        self._cudart.cudaGraphExecDestroy(self._exec)
        self._cudart.cudaGraphDestroy(self._graph)

    @staticmethod
    def _check(status: int) -> None:
        if status != 0:
            raise RuntimeFault(f"CUDA graph capture failed (cudaError {status}); run with "
                               "cuda_graph=False (--no-cuda-graph)")


class TensorRTRunner(Runner):
    """A serialized TensorRT engine (``build-engine`` output) with buffers allocated once."""

    kind: ClassVar[str] = "tensorrt"
    description: ClassVar[str] = ("TensorRT engine (a full TensorRT or TensorRT-RTX plan, run by "
                                  "the backend that built it)")
    title: ClassVar[str] = "TensorRT"
    distributions: ClassVar[tuple[str, ...]] = TENSORRT.distributions + TENSORRT_RTX.distributions
    runs_fp16: ClassVar[bool] = True  # the FP16 engine
    # A plan (build-engine --saveEngine, trtexec --saveEngine), or a graph built on first use
    model_suffixes: ClassVar[tuple[str, ...]] = PLAN_SUFFIXES + (".onnx",)
    timing_rank: ClassVar[int | None] = 0
    defaults: ClassVar[dict[str, Any]] = {"fp16": False, "cuda_graph": False}

    @classmethod
    def unavailable_reason(cls) -> str | None:
        """A plan runs with the backend that built it: full TensorRT on the GPU model it was
        built on, TensorRT-RTX on the RTX-class GPUs it targets; either needs a GPU."""
        found, _ = gpus()
        gpu = found[0] if found else None
        installed = [b for b in BACKENDS.values() if b.installed_reason() is None]
        if not installed:
            return (f"neither TensorRT nor TensorRT-RTX is installed: {TENSORRT.install}, or "
                    f"{TENSORRT_RTX.install}")
        reasons = [f"{b.title}: {reason}" for b in installed if (reason := b.run_reason(gpu))]
        if len(reasons) < len(installed):
            return None
        builds = [b.title for b in installed if b.build_reason() is None]
        return "; ".join(reasons) + (f" (engines still build here with {builds[0]}: crossrt "
                                     "build-engine)" if builds else "")

    @classmethod
    def export_file(cls, export: ExportDir, fp16: bool = False) -> Path:
        """The export's engine, built on first use, reused while its graph's hash is unchanged."""
        from runtimes.engine import ensure_engine

        if not export.onnx_path().is_file():
            raise UsageError(f"{export.onnx_path()} is missing: export it with crossrt "
                             "export-onnx MODEL")
        return ensure_engine(export.onnx_path(), fp16)[0]

    @classmethod
    def target_file(cls, target: Path, fp16: bool = False) -> Path:
        """A plan as it is; a bare ONNX graph's engine, built beside it on first use."""
        chosen = super().target_file(target, fp16)
        if target.is_dir() or chosen.suffix.lower() != ".onnx":
            return chosen
        from runtimes.engine import ensure_engine

        return ensure_engine(chosen, fp16)[0]

    @classmethod
    def details(cls) -> dict[str, Any]:
        return {"backends": describe_backends()}  # which plans this machine builds and runs

    def __init__(self, path: Any, **options: Any):
        super().__init__(path, **options)
        self._engine: trt.ICudaEngine | None = None
        self._context: trt.IExecutionContext | None = None
        self._stream: Any = None
        self._buffers: dict[str, Any] | None = None
        self._dtypes: dict[str, np.dtype] | None = None
        self._ranges: list[dict[str, tuple[tuple[int, ...], tuple[int, ...]]]] | None = None
        self._profile: int | None = None
        self._graphs: dict[tuple[Any, ...], _CudaGraph] | None = None
        self._shape_key: tuple[Any, ...] | None = None
        self._backend: Backend | None = None

    def _load(self) -> None:
        from polygraphy import cuda
        from polygraphy.datatype import DataType

        engine, backend = load_engine(self.path)
        if TYPE_CHECKING:
            import tensorrt as trt
        else:
            trt = backend.load()
        self._backend = backend

        context = engine.create_execution_context()
        inputs = io_names(engine, trt.TensorIOMode.INPUT)
        outputs = io_names(engine, trt.TensorIOMode.OUTPUT)
        dtypes = {name: np.dtype(trt.nptype(engine.get_tensor_dtype(name)))
                  for name in inputs + outputs}
        ranges = profile_ranges(engine, inputs)
        self._stream = cuda.Stream()
        largest: dict[str, tuple[int, ...]] = {}  # per tensor, over every profile's max shapes
        for profile, _ in enumerate(ranges):
            context.set_optimization_profile_async(profile, self._stream.ptr)
            for name in inputs:
                context.set_input_shape(name, ranges[profile][name][1])
            shapes = {name: ranges[profile][name][1] for name in inputs}
            shapes.update({name: tuple(context.get_tensor_shape(name)[:]) for name in outputs})
            for name, shape in shapes.items():
                if np.prod(shape) >= np.prod(largest.get(name, ())):
                    largest[name] = shape
        self._stream.synchronize()
        self._buffers = {name: cuda.DeviceArray(shape, DataType.from_dtype(dtypes[name]))
                         for name, shape in largest.items()}  # allocated once
        self._engine, self._context, self._ranges, self._dtypes = engine, context, ranges, dtypes
        self._graphs, self._profile = {}, None

    def _unload(self) -> None:
        for graph in (self._graphs or {}).values():
            graph.free()
        for buffer in (self._buffers or {}).values():
            buffer.free()
        if self._stream is not None:
            self._stream.free()
        self._engine = self._context = self._stream = self._buffers = self._ranges = None
        self._graphs = self._profile = self._shape_key = self._dtypes = None

    def _inputs(self) -> dict[str, InputSpec]:
        assert self._engine is not None and self._ranges is not None and self._dtypes
        specs = {}
        for name in self._ranges[0]:
            dims = tuple(self._engine.get_tensor_shape(name)[:])
            lows = [r[name][0] for r in self._ranges]
            highs = [r[name][1] for r in self._ranges]
            specs[name] = InputSpec(name, self._dtypes[name],
                                    tuple(None if d < 0 else d for d in dims),
                                    tuple(map(min, zip(*lows))), tuple(map(max, zip(*highs))))
        return specs

    def _outputs(self) -> list[str]:
        assert self._buffers is not None and self._ranges is not None
        return [name for name in self._buffers if name not in self._ranges[0]]

    def _bind(self, feed: dict[str, np.ndarray]) -> None:
        assert self._context is not None and self._buffers is not None and self._ranges is not None
        shapes = {name: tuple(array.shape) for name, array in feed.items()}
        profile = pick_profile(self._ranges, shapes)
        if profile is None:  # check_feed admits the union of profiles; one must hold them all
            raise UsageError(f"no optimisation profile of {self.path} holds input shapes {shapes}")
        if profile != self._profile:
            self._context.set_optimization_profile_async(profile, self._stream.ptr)
            self._profile = profile
        for name, array in feed.items():
            self._context.set_input_shape(name, array.shape)
            self._buffers[name].resize(array.shape).copy_from(array, self._stream)
        for name in self._outputs():
            self._buffers[name].resize(tuple(self._context.get_tensor_shape(name)[:]))
        for name, buffer in self._buffers.items():
            self._context.set_tensor_address(name, buffer.ptr)
        self._shape_key = (profile, *sorted(shapes.items()))

    def _enqueue(self) -> None:
        assert self._context is not None
        if not self._context.execute_async_v3(self._stream.ptr):
            raise RuntimeFault(f"TensorRT failed to run {self.path} (execute_async_v3 returned "
                               "False); run with --verbose to see TensorRT's log")

    def _run_bound(self) -> None:
        assert self._graphs is not None and self._shape_key is not None
        if not self.options["cuda_graph"]:
            self._enqueue()
        else:
            graph = self._graphs.get(self._shape_key)
            if graph is None:
                from polygraphy import cuda

                self._enqueue()  # TensorRT finishes shape-dependent set-up before capture
                self._stream.synchronize()
                graph = _CudaGraph(cuda.wrapper().handle, self._stream.ptr, self._enqueue)
                self._graphs[self._shape_key] = graph
            graph.launch(self._stream.ptr)
        self._stream.synchronize()

    def _fetch_bound(self) -> dict[str, np.ndarray]:
        assert self._buffers is not None and self._dtypes is not None
        outputs = {}
        for name in self._outputs():
            buffer = self._buffers[name]
            host = np.empty(buffer.shape, dtype=self._dtypes[name])
            outputs[name] = buffer.copy_to(host, self._stream)
        self._stream.synchronize()
        return outputs

    def _run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self._bound = None  # infer reuses the device buffers: a later run_bound needs bind again
        self._bind({name: np.ascontiguousarray(array) for name, array in feed.items()})
        self._run_bound()
        return self._fetch_bound()

    def _describe(self) -> dict[str, Any]:
        sidecar = read_sidecar(self.path) or {}
        found, _ = gpus()
        backend = self._backend
        return {"versions": {backend.name if backend else "tensorrt":
                             backend.version() if backend else None},
                "backend": backend.name if backend else None,
                "device": found[0]["name"] if found else "no GPU",
                "gpu": found[0] if found else {},
                "precision": sidecar.get("precision", {}).get("engine", "unknown (no sidecar)"),
                "profiles": sidecar.get("profiles"),
                "cuda_graph": bool(self.options["cuda_graph"])}
