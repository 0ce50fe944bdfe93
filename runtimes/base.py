"""The one runner interface every runtime implements, on top of Polygraphy's ``BaseRunner``.

Subclassing Polygraphy's runner means our runners plug straight into its ``Comparator.run``
and its ``RunResults`` save/load format. What we add on top: every feed is checked against
the model's inputs (names, dtype, shape, profile range) *before* the runtime sees it, with
one-line :class:`UsageError` messages; a timing path (``bind`` once, ``run_bound`` many
times) that runtimes override with their fastest way of running; and ``describe()`` for
provenance. A runtime fills in four hooks: ``_load``, ``_unload``, ``_inputs``, ``_run``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from polygraphy.backend.base import BaseRunner

from core.errors import UsageError

if TYPE_CHECKING:
    from core.layout import ExportDir

Shape = tuple[int | None, ...]  # None marks a dynamic dimension (Polygraphy's convention)


@dataclass(frozen=True)
class InputSpec:
    """What one model input accepts. ``min_shape``/``max_shape`` bound the dynamic dims."""

    name: str
    dtype: np.dtype
    shape: Shape
    min_shape: tuple[int, ...] | None = None
    max_shape: tuple[int, ...] | None = None

    def describe_shape(self) -> str:
        """``Nx3x224x224 (N: any size)`` or ``Nx3x224x224 (from 1x3x224x224 to 8x3x224x224)``."""
        dims = _dims("N" if d is None else d for d in self.shape)
        if self.min_shape is not None and self.max_shape is not None:
            return f"{dims} (from {_dims(self.min_shape)} to {_dims(self.max_shape)})"
        return f"{dims} (N: any size)" if None in self.shape else dims

    def accepts_shape(self, shape: tuple[int, ...]) -> bool:
        if len(shape) != len(self.shape):
            return False
        if any(want is not None and want != got for want, got in zip(self.shape, shape)):
            return False
        low = self.min_shape or (1,) * len(shape)
        high = self.max_shape or shape
        return all(lo <= got <= hi for lo, got, hi in zip(low, shape, high))


def check_feed(feed: dict[str, Any], inputs: dict[str, InputSpec]) -> None:
    """Raise a UsageError naming the input, what was expected and what came, or return."""
    if not isinstance(feed, dict):
        raise UsageError(f"expected a dict of input name -> numpy array, got {type(feed).__name__}")
    unknown = sorted(set(feed) - set(inputs))
    missing = sorted(set(inputs) - set(feed))
    if unknown or missing:
        what = f"unknown input {unknown[0]!r}" if unknown else f"missing input {missing[0]!r}"
        raise UsageError(f"{what}: expected inputs {sorted(inputs)}, got {sorted(feed)}")
    for name, spec in inputs.items():
        array = feed[name]
        if not isinstance(array, np.ndarray):
            raise UsageError(f"input {name!r}: expected a numpy array, got {type(array).__name__}")
        if array.dtype != spec.dtype:
            raise UsageError(f"input {name!r}: expected dtype {spec.dtype}, got {array.dtype}")
        if not spec.accepts_shape(array.shape):
            raise UsageError(f"input {name!r}: expected shape {spec.describe_shape()}, "
                             f"got {_dims(array.shape) or 'a scalar'}")


def _dims(shape: Any) -> str:
    return "x".join(map(str, shape))


class Runner(BaseRunner):
    """A runtime that runs one model file. Use it as a context manager.

    Subclasses declare ``kind`` and ``defaults`` (their options, as data) and implement
    ``_load``/``_unload``/``_inputs``/``_run``; the fast path ``_bind``/``_run_bound``/
    ``_fetch_bound`` is optional (the default runs ``infer`` on the bound feed).
    """

    kind: ClassVar[str] = ""
    defaults: ClassVar[dict[str, Any]] = {}
    # What a runtime declares about itself (read by ``runtimes.availability`` and ``factory``)
    description: ClassVar[str] = ""
    title: ClassVar[str] = ""  # how a report names it: "ONNX Runtime CPU"
    distributions: ClassVar[tuple[str, ...]] = ()  # pip names that carry its version
    localizable: ClassVar[bool] = False  # runs an ONNX graph whose tensors can be marked
    has_fp16_graph: ClassVar[bool] = False  # fp16=True runs another (FP16) model file
    model_suffixes: ClassVar[tuple[str, ...]] = (".onnx",)  # the model files it runs as given
    runs_fp16: ClassVar[bool] = False  # validate --fp16 adds it at FP16 (option fp16=True)
    # The ONNX graph as written, on the CPU in FP32: what the other runtimes' runs of the same
    # graph are localised against, and the runtime that tells whether the graph itself departs
    # from Paddle.
    runs_graph_as_written: ClassVar[bool] = False
    # Which runtime is chosen when none is named, where it is available (lower first; None:
    # never by default): the reference of validate and accuracy, and bench's runtime.
    reference_rank: ClassVar[int | None] = None
    timing_rank: ClassVar[int | None] = None

    @classmethod
    def unavailable_reason(cls) -> str | None:
        """None when this runtime runs here, else one line: what to install or what is missing.
        Checked from files and the CUDA driver, never by importing the runtime."""
        return None

    @classmethod
    def device_note(cls) -> str:
        """Where it runs, for ``crossrt runtimes`` (default: the first visible GPU)."""
        from runtimes.probe import gpus

        found, _ = gpus()
        return f" on {found[0]['name']} (sm {found[0]['compute_capability']})" if found else ""

    @classmethod
    def export_options(cls, export: ExportDir) -> dict[str, Any]:
        """Options that running ``export`` needs beyond the caller's (default: none)."""
        return {}

    @classmethod
    def export_file(cls, export: ExportDir, fp16: bool = False) -> Path:
        """The file of an export folder this runtime loads (default: its ONNX graph)."""
        return export.onnx_path(fp16 and cls.has_fp16_graph)

    @classmethod
    def target_file(cls, target: Path, fp16: bool = False) -> Path:
        """What it loads from ``target``: a model file as it is, or an export folder's file."""
        from core.layout import ExportDir

        if not target.exists():
            raise UsageError(f"{target} does not exist: give a model file or an export directory")
        if not target.is_dir():
            if target.suffix.lower() not in cls.model_suffixes:
                raise UsageError(f"runtime {cls.kind} does not run {target.name} (it runs "
                                 f"{', '.join(cls.model_suffixes)} files)")
            return target
        chosen = cls.export_file(ExportDir(target), fp16)
        if not chosen.is_file():
            raise UsageError(f"{chosen} is missing: export it with crossrt export-onnx MODEL"
                             + (" --fp16" if fp16 else ""))
        return chosen

    @classmethod
    def details(cls) -> dict[str, Any]:
        """Extra facts for ``crossrt runtimes --json`` (e.g. TensorRT's backends)."""
        return {}

    def __init__(self, path: str | Path, *, name: str | None = None, **options: Any):
        super().__init__(name=name or self.kind, prefix=self.kind)
        unknown = sorted(set(options) - set(self.defaults))
        if unknown:
            raise UsageError(f"unknown option {unknown[0]!r} for runner {self.kind}; "
                             f"options: {', '.join(sorted(self.defaults)) or 'none'}")
        self.path = Path(path)
        self.options: dict[str, Any] = {**self.defaults, **options}
        self._specs: dict[str, InputSpec] | None = None
        self._bound: dict[str, np.ndarray] | None = None
        self._bound_outputs: dict[str, np.ndarray] | None = None
        self._ran_bound = False

    # -- hooks -------------------------------------------------------------------------
    def _load(self) -> None:
        raise NotImplementedError

    def _unload(self) -> None:
        raise NotImplementedError

    def _inputs(self) -> dict[str, InputSpec]:
        raise NotImplementedError

    def _run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def _bind(self, feed: dict[str, np.ndarray]) -> None:
        """Copy the (contiguous) feed to where the runtime reads it; default: nowhere."""

    def _run_bound(self) -> None:
        assert self._bound is not None
        self._bound_outputs = self._run(self._bound)

    def _fetch_bound(self) -> dict[str, np.ndarray]:
        assert self._bound_outputs is not None
        return {name: np.array(value) for name, value in self._bound_outputs.items()}

    def _describe(self) -> dict[str, Any]:
        """Runtime-specific provenance: versions, device, provider, precision."""
        return {}

    # -- Polygraphy's hooks --------------------------------------------------------------
    def activate_impl(self) -> None:
        self._load()
        self._specs = self._inputs()

    def deactivate_impl(self) -> None:
        self._unload()
        self._specs = self._bound = self._bound_outputs = None
        self._ran_bound = False

    def get_input_metadata_impl(self) -> Any:
        return self._metadata(numpy_dtypes=False)

    def infer_impl(self, feed_dict: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        start = time.perf_counter()
        outputs = self._run(feed_dict)
        self.inference_time = time.perf_counter() - start
        return outputs

    # -- public API ------------------------------------------------------------------------
    @property
    def input_specs(self) -> dict[str, InputSpec]:
        """Name -> InputSpec of the model's inputs (needs an active runner)."""
        self._require_active("read input metadata")
        assert self._specs is not None
        return self._specs

    def get_input_metadata(self, use_numpy_dtypes: bool = True) -> Any:
        """Polygraphy ``TensorMetadata``: name -> (dtype, shape), dynamic dims as None.

        NumPy dtypes by default (Polygraphy's ``Comparator`` asks for its own ``DataType``).
        """
        return self._metadata(numpy_dtypes=use_numpy_dtypes)

    def infer(self, feed_dict: dict[str, np.ndarray], check_inputs: bool = True,
              *args: Any, **kwargs: Any) -> dict[str, np.ndarray]:
        """Run one inference on host arrays; returns fresh host arrays (name -> array)."""
        self._require_active("run inference")
        if check_inputs:
            check_feed(feed_dict, self.input_specs)
        return self.infer_impl(feed_dict, *args, **kwargs)

    def bind(self, feed: dict[str, np.ndarray]) -> None:
        """Put ``feed`` where the runtime wants it (device memory on GPUs), once."""
        self._require_active("bind inputs")
        check_feed(feed, self.input_specs)
        self._bound = {name: np.ascontiguousarray(array) for name, array in feed.items()}
        self._bound_outputs, self._ran_bound = None, False
        self._bind(self._bound)

    def run_bound(self) -> None:
        """One inference on the bound inputs, synchronised; outputs stay where they are."""
        if self._bound is None:
            raise UsageError(f"runner {self.name}: call bind(feed) before run_bound()")
        self._run_bound()
        self._ran_bound = True

    def fetch_bound(self) -> dict[str, np.ndarray]:
        """Host copies of the outputs of the last ``run_bound`` (checks the fast path)."""
        self._require_active("fetch outputs")
        if not self._ran_bound:
            raise UsageError(f"runner {self.name}: call bind(feed) and run_bound() "
                             "before fetch_bound()")
        return self._fetch_bound()

    def describe(self) -> dict[str, Any]:
        """JSON-able provenance: runtime, versions, device, precision, threads, options."""
        return {"runtime": self.kind, "name": self.name, "model": str(self.path),
                "options": {k: _jsonable(v) for k, v in self.options.items()},
                **self._describe()}

    def _metadata(self, numpy_dtypes: bool) -> Any:
        from polygraphy.common import TensorMetadata

        meta = TensorMetadata()
        for spec in self.input_specs.values():
            meta.add(spec.name, dtype=spec.dtype, shape=list(spec.shape),
                     min_shape=spec.min_shape, max_shape=spec.max_shape)
            if numpy_dtypes:  # what Polygraphy's own BaseRunner does for NumPy dtypes
                meta[spec.name]._dtype = spec.dtype
        return meta

    def _require_active(self, what: str) -> None:
        if not self.is_active:
            raise UsageError(f"runner {self.name} is not active: "
                             f"use it in a `with` block to {what}")


def _jsonable(value: Any) -> Any:
    return str(value) if isinstance(value, Path) else value
