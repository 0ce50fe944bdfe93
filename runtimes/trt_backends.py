"""The two TensorRT builds crossrt drives, each declared once as a :class:`Backend`.

- ``tensorrt``: full TensorRT (module ``tensorrt``), for GPU servers. Its builder needs a GPU
  and tunes kernels on it; the plan runs on that GPU model with that TensorRT version.
- ``tensorrt-rtx``: TensorRT-RTX (module ``tensorrt_rtx``, ``pip install 'crossrt[trt-rtx]'``).
  Its builder runs ahead of time on any machine, no GPU needed; the plan is compiled for a
  list of compute capabilities and finished by a just-in-time step on the device at first run.
  Its targets are RTX-class GPUs: by default 8.0, 8.6, 8.9, 12.0 and 12.1; 7.5 (Turing, e.g.
  T4) only when asked for; there is no 9.0 or 10.0 target, so H100/H200/B200 need full
  TensorRT.

Both are driven through the same Polygraphy loaders. Polygraphy chooses the module once per
process (``polygraphy.config.USE_TENSORRT_RTX``, read when ``polygraphy.backend.trt`` is
first imported), so :func:`use_backend` sets it before that import and refuses to switch
afterwards. TensorRT sends every message to the first logger registered in a process, so the
one :class:`BuildLog` is installed as Polygraphy's TensorRT logger before any TensorRT object
exists; the builder's layer report (which proves the precision without a GPU) is read from it.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from core.errors import DependencyError, UsageError
from runtimes import probe

Compute = tuple[int, int]  # (major, minor)


@dataclass(frozen=True)
class Backend:
    """One TensorRT build: names, files, what its plans look like and where they run."""

    name: str  # the --backend value and the sidecar's "backend"
    title: str  # how a user calls it
    module: str
    distributions: tuple[str, ...]  # pip names that carry the version
    library: str  # core shared library stem (lib{library}.so)
    library_packages: tuple[str, ...]
    plan_magic: bytes  # the first four bytes of its serialized plans
    install: str
    builds_without_gpu: bool
    # Compute capability -> bit of the plan header's target mask (TensorRT-RTX only; observed
    # on 1.7: byte 32 of the plan, 0x7e when no target is named)
    target_bits: tuple[tuple[Compute, int], ...] = ()
    default_targets: tuple[Compute, ...] = ()
    # Targets this backend builds FP16 engines for only (TensorRT-RTX 1.7 has no FP32 GEMM
    # kernels for Turing: an FP32 build for 7.5 fails inside TensorRT)
    fp16_only_targets: tuple[Compute, ...] = ()

    def installed_reason(self) -> str | None:
        """None when the real module and its libraries are installed, else what to install."""
        dirs = probe.spec_dirs(self.module)
        if not dirs:
            return f"{self.title} is not installed: {self.install}"
        compiled = ("tensorrt*.so", "tensorrt*.pyd", "*.cpython-*.so")
        if not probe.has_files(dirs + probe.spec_dirs(f"{self.module}_bindings"), *compiled):
            if probe.has_files(dirs, "*.pyi"):
                return (f"the '{self.module}' found at {dirs[0]} is type stubs, not "
                        f"{self.title}: {self.install}")
            return (f"the '{self.module}' found at {dirs[0]} has no compiled bindings: "
                    f"{self.install}")
        if probe.find_library(self.library, self.library_packages) is None:
            return (f"{self.title}'s Python bindings are installed but not its libraries "
                    f"(lib{self.library}): {self.install}")
        return None

    def version(self) -> str | None:
        return probe.version(*self.distributions)

    def build_reason(self) -> str | None:
        """None when this backend can build engines on this machine, else why not."""
        if reason := self.installed_reason():
            return reason
        if not self.builds_without_gpu:
            found, why = probe.gpus()
            if not found:
                return f"{self.title} builds on a GPU and {why}"
        return None

    def run_reason(self, gpu: dict[str, Any] | None, targets: tuple[Compute, ...] | None = None,
                   ) -> str | None:
        """None when a plan of this backend (for ``targets``) can run on ``gpu``, else why not."""
        if reason := self.installed_reason():
            return reason
        if gpu is None:
            return probe.gpus()[1] or "no GPU is visible"
        if not self.target_bits:
            # full TensorRT: any GPU it supports (the sidecar names the one it was built on)
            return None
        have = parse_compute(gpu["compute_capability"])
        wanted = targets or self.default_targets
        if have not in wanted:
            return (f"{gpu['name']} has compute capability {format_compute(have)}, which this "
                    f"{self.title} plan does not target ({format_computes(wanted)})"
                    + (f"; {self.title} has no {format_compute(have)} target: use full TensorRT "
                       "(--backend tensorrt) on this GPU" if have not in self.targets() else
                       f"; rebuild with --computeCapabilities {format_compute(have)}"))
        return None

    def targets(self) -> tuple[Compute, ...]:
        return tuple(compute for compute, _ in self.target_bits)

    def check_targets(self, wanted: tuple[Compute, ...]) -> tuple[Compute, ...]:
        """The requested compute capabilities, refused when this backend cannot target them."""
        if not self.target_bits:
            raise UsageError(f"--computeCapabilities is for TensorRT-RTX; {self.title} builds for "
                             "the GPU it runs on: drop the flag or use --backend tensorrt-rtx")
        for compute in wanted:
            if compute not in self.targets():
                raise UsageError(
                    f"{self.title} has no compute capability {format_compute(compute)} target "
                    f"(it targets {format_computes(self.targets())}): "
                    + ("data-center GPUs such as H100/H200 (9.0) and B200 (10.0) need full "
                       "TensorRT: --backend tensorrt on that GPU" if compute[0] in (9, 10) else
                       "choose from the targets listed"))
        return wanted

    def mask_targets(self, mask: int) -> tuple[Compute, ...]:
        """The compute capabilities whose bits are set in a plan header's target mask."""
        return tuple(compute for compute, bit in self.target_bits if mask >> bit & 1)

    def load(self) -> ModuleType:
        """The imported module, checked to be the real thing (not type stubs)."""
        if reason := self.installed_reason():
            raise DependencyError(reason)
        try:
            module = __import__(self.module)
        except ImportError as error:
            raise DependencyError(f"{self.title} cannot be imported ({error}): "
                                  f"{self.install}") from error
        if not hasattr(module, "Builder"):
            raise DependencyError(f"the '{self.module}' module has no Builder (type stubs?): "
                                  f"{self.install}")
        return module

    def has_fp16_flag(self) -> bool:
        """TensorRT 10 takes the FP16 builder flag; TensorRT 11 and TensorRT-RTX networks are
        always strongly typed (FP16 comes from the FP16 graph). Decided by capability, never by
        version number: TensorRT-RTX 1.7 is not "TensorRT 1"."""
        return hasattr(self.load().BuilderFlag, "FP16")


TENSORRT = Backend(
    name="tensorrt", title="TensorRT", module="tensorrt",
    distributions=("tensorrt", "tensorrt-cu13", "tensorrt-cu12", "tensorrt-cu13-bindings",
                   "tensorrt-cu12-bindings"),
    library="nvinfer", library_packages=("tensorrt_libs", "tensorrt"), plan_magic=b"ftrt",
    install="pip install 'crossrt[trt]' (TensorRT >= 10 with its libraries, e.g. tensorrt-cu12)",
    builds_without_gpu=False)
TENSORRT_RTX = Backend(
    name="tensorrt-rtx", title="TensorRT-RTX", module="tensorrt_rtx",
    distributions=("tensorrt-rtx-cu13", "tensorrt-rtx-cu12", "tensorrt-rtx",
                   "tensorrt_rtx_cu13_bindings", "tensorrt_rtx_cu12_bindings"),
    library="tensorrt_rtx", library_packages=("tensorrt_rtx_libs", "tensorrt_rtx"),
    plan_magic=b"vtrt",
    install="pip install 'crossrt[trt-rtx]' (TensorRT-RTX, builds without a GPU)",
    builds_without_gpu=True,
    target_bits=(((7, 5), 0), ((8, 0), 1), ((8, 6), 2), ((8, 9), 3), ((12, 0), 4), ((12, 1), 5)),
    default_targets=((8, 0), (8, 6), (8, 9), (12, 0), (12, 1)), fp16_only_targets=((7, 5),))
BACKENDS = {backend.name: backend for backend in (TENSORRT, TENSORRT_RTX)}
BACKEND_CHOICES = ("auto", *BACKENDS)


def select_backend(name: str | None = None) -> Backend:
    """``auto`` (or None): full TensorRT where it can build (libraries and a GPU), else
    TensorRT-RTX where it is installed; a named backend must be able to build here."""
    if name in (None, "auto"):
        for backend in (TENSORRT, TENSORRT_RTX):
            if backend.build_reason() is None:
                return backend
        raise DependencyError("no TensorRT backend can build engines here: "
                              f"{TENSORRT_RTX.build_reason()}; or, on a GPU server, "
                              f"{TENSORRT.install}")
    if name not in BACKENDS:
        raise UsageError(f"unknown backend {name!r}; choose one of: {', '.join(BACKEND_CHOICES)}")
    backend = BACKENDS[name]
    if reason := backend.build_reason():
        raise DependencyError(f"cannot build with {backend.title}: {reason}")
    return backend


def plan_backend(magic: bytes) -> Backend | None:
    return next((b for b in BACKENDS.values() if b.plan_magic == magic), None)


def parse_compute(text: str) -> Compute:
    """``8.6`` -> (8, 6)."""
    major, dot, minor = text.strip().partition(".")
    if not (dot and major.isdigit() and minor.isdigit()):
        raise UsageError(f"bad compute capability {text!r}: expected MAJOR.MINOR like 8.6")
    return int(major), int(minor)


def parse_computes(text: str) -> tuple[Compute, ...]:
    """``--computeCapabilities 8.6,8.9`` -> ((8, 6), (8, 9))."""
    computes = tuple(dict.fromkeys(parse_compute(part) for part in text.split(",") if part.strip()))
    if not computes:
        raise UsageError("empty --computeCapabilities: expected e.g. 8.6,8.9")
    return computes


def format_compute(compute: Compute) -> str:
    return f"{compute[0]}.{compute[1]}"


def format_computes(computes: tuple[Compute, ...]) -> str:
    return ", ".join(map(format_compute, computes))


# -- Polygraphy and the one TensorRT logger of a process ---------------------------------------
_ACTIVE: list[Backend] = []  # the backend this process's Polygraphy was set up for


def use_backend(backend: Backend) -> ModuleType:
    """Point Polygraphy's TensorRT loaders at ``backend`` and install the capturing logger
    (both once per process); returns the TensorRT module."""
    from polygraphy import config

    module = backend.load()
    wanted = backend is TENSORRT_RTX
    loaded = "polygraphy.backend.trt" in sys.modules  # its choice of module is then fixed
    current = _ACTIVE[0] if _ACTIVE else (
        (TENSORRT_RTX if config.USE_TENSORRT_RTX else TENSORRT) if loaded else backend)
    if current is not backend:
        raise DependencyError(f"this process already uses {current.title} through Polygraphy, "
                              f"which cannot switch to {backend.title}: run it in a new process")
    config.USE_TENSORRT_RTX = wanted
    if not _ACTIVE:
        from polygraphy.backend.trt import util as trt_util

        if trt_util.TRT_LOGGER is None:
            trt_util.TRT_LOGGER = BuildLog.create(module)
        _ACTIVE.append(backend)
    return module


class BuildLog:
    """TensorRT's messages, kept while :meth:`capture` is open; warnings and errors are also
    passed to Polygraphy's logger (printed only with ``--verbose``)."""

    _instance: Any = None

    @classmethod
    def create(cls, module: ModuleType) -> Any:
        """A ``module.ILogger`` that records; one per process (TensorRT keeps the first)."""
        if cls._instance is None:
            from polygraphy.logger import G_LOGGER

            _LEVELS = {getattr(module.ILogger.Severity, name): name for name in
                       ("INTERNAL_ERROR", "ERROR", "WARNING", "INFO", "VERBOSE")}
            _FORWARDED = ("INTERNAL_ERROR", "ERROR", "WARNING")

            class _Logger(module.ILogger):  # type: ignore[name-defined]
                def __init__(self) -> None:
                    module.ILogger.__init__(self)
                    self.messages: list[tuple[str, str]] | None = None

                def log(self, severity: Any, message: str) -> None:
                    level = _LEVELS.get(severity) or str(severity).rsplit(".", 1)[-1]
                    kept = level in _FORWARDED or message.startswith("Layers:")
                    if kept and self.messages is not None:  # problems, and the layer report
                        self.messages.append((level, message))
                    if kept or G_LOGGER.module_severity.get() <= G_LOGGER.VERBOSE:
                        # a detailed build logs thousands of lines: pass them on only if shown
                        forward = {"INTERNAL_ERROR": G_LOGGER.error, "ERROR": G_LOGGER.error,
                                   "WARNING": G_LOGGER.warning, "INFO": G_LOGGER.verbose}
                        forward.get(level, G_LOGGER.extra_verbose)(message)

            cls._instance = _Logger()
        return cls._instance

    @classmethod
    @contextlib.contextmanager
    def capture(cls) -> Iterator[list[tuple[str, str]]]:
        """(severity, message) of the errors and warnings TensorRT logs inside the block, and
        of its layer report (the rest of a detailed build's thousands of lines is not kept)."""
        from polygraphy.backend.trt import util as trt_util

        logger = trt_util.TRT_LOGGER
        messages: list[tuple[str, str]] = []
        if logger is not cls._instance or logger is None:
            yield messages  # someone else's logger came first: nothing can be captured
            return
        logger.messages = messages
        try:
            yield messages
        finally:
            logger.messages = None


def progress_monitor(module: ModuleType, stop: Callable[[], bool]) -> Any | None:
    """A ``module.IProgressMonitor`` that cancels the build at its next step once ``stop()``
    is true (Ctrl-C or SIGTERM arrived); None for a build without progress monitors."""
    base = getattr(module, "IProgressMonitor", None)
    if base is None:
        return None

    class _Monitor(base):  # type: ignore[misc,valid-type]
        def __init__(self) -> None:
            base.__init__(self)  # type: ignore[misc]  # pybind11 classes need it

        def phase_start(self, phase_name: str, parent_phase: str | None, num_steps: int) -> None:
            pass

        def step_complete(self, phase_name: str, step: int) -> bool:
            return not stop()  # False: TensorRT abandons the build

        def phase_finish(self, phase_name: str) -> None:
            pass

    return _Monitor()


def first_error(messages: list[tuple[str, str]]) -> str | None:
    """The first error TensorRT logged, on one line."""
    for level, message in messages:
        if level in ("ERROR", "INTERNAL_ERROR") and message.strip():
            return " ".join(message.split())
    return None


def read_plan_header(path: Path) -> dict[str, Any]:
    """What a plan file says about itself without TensorRT or a GPU: its backend (by magic),
    and for TensorRT-RTX plans the version and targets (header layout observed on 1.7)."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(64)
    except IsADirectoryError as error:
        raise UsageError(f"{path} is a folder, not an engine file") from error
    except OSError as error:
        raise UsageError(f"cannot read engine {path}: {error.strerror}") from error
    backend = plan_backend(head[:4])
    if backend is None:
        raise UsageError(f"{path} is not a TensorRT engine (its first bytes are {head[:4]!r}); "
                         "build one with crossrt build-engine")
    header: dict[str, Any] = {"backend": backend.name}
    if backend is TENSORRT_RTX and len(head) >= 33:
        header["version"] = ".".join(str(b) for b in head[24:27])
        header["targets"] = [format_compute(c) for c in backend.mask_targets(head[32])]
        header["target_mask"] = head[32]
    return header


def describe_backends() -> list[dict[str, Any]]:
    """Each backend with what it can do on this machine (for ``crossrt runtimes``)."""
    found, _ = probe.gpus()
    gpu = found[0] if found else None
    rows = []
    for backend in BACKENDS.values():
        installed = backend.installed_reason()
        build = backend.build_reason()
        run = backend.run_reason(gpu)
        version = backend.version() or "(version unknown)"
        if installed:
            summary = installed
        else:
            where = ("runs on RTX-class GPUs (compute capability "
                     f"{format_computes(backend.default_targets)}; 7.5 if targeted)"
                     if backend.target_bits else "runs on the GPU model it was built on")
            summary = (f"{backend.name} {version}: "
                       + ("builds here" + (" (no GPU needed)" if backend.builds_without_gpu else "")
                          if build is None else f"cannot build here ({build})")
                       + f"; {where}" + ("" if run is None else f"; cannot run here ({run})"))
        rows.append({"backend": backend.name, "installed": installed is None,
                     "builds_here": build is None, "runs_here": run is None,
                     "version": None if installed else version, "summary": summary})
    return rows
