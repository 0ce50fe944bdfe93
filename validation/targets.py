"""What validate and accuracy share: the export they run, the reference and the runtimes
beside it, and how each one's runner is opened.

A target is an export folder or a model name (its default folder, exported first when it
does not exist). The reference is Paddle Inference where it is installed (the ground truth),
else ONNX Runtime CPU; the runtimes beside it are those named, else every one available
here, each also at FP16 with ``fp16`` where its runner runs FP16. All of it is decided from
the runners' own declarations (``runtimes.base.Runner``), and checked before any work.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import runtimes
from core.errors import UsageError
from core.graphs import read_onnx
from core.layout import MANIFEST_FILE, ExportDir
from core.log import log
from core.spec import FP16, FP32, ModelSpec, Precision
from exporter.specs import get_spec
from runtimes.base import Runner
from runtimes.factory import require_available, runner_class


@dataclass(frozen=True)
class Participant:
    """One runner in a comparison: a runtime kind at a precision."""

    kind: str
    precision: Precision = FP32

    @property
    def runner(self) -> type[Runner]:
        """Its runner class, with everything it declares about itself."""
        return runner_class(self.kind)

    @property
    def label(self) -> str:
        return self.kind if self.precision == FP32 else f"{self.kind}-{self.precision}"

    def open(self, export_dir: Path, **options: Any) -> Runner:
        """Its runner on the export (activate it with ``with``)."""
        log.info(f"loading {self.label}")
        fp16 = {"fp16": True} if self.precision == FP16 else {}
        return runtimes.create_runner(self.kind, export_dir, **fp16, **options)


def choose_reference(reference: str | None) -> Participant:
    """``reference``, available here; by default the most preferred runner that is
    (``reference_rank``: Paddle Inference, else ONNX Runtime CPU FP32)."""
    if reference is None:
        ranked = runtimes.preferred("reference_rank")
        reference = next((k for k in ranked if runtimes.is_available(k)[0]), ranked[-1])
    return Participant(require_available(reference))


def participants(requested: Sequence[str] | None, reference: Participant,
                 fp16: bool) -> list[Participant]:
    """The runtimes beside the reference: ``requested`` (each must be available here), else
    every one available here; with ``fp16`` also each whose runner runs FP16 (the FP16 graph,
    or engine)."""
    if requested is not None:
        kinds = [require_available(kind) for kind in dict.fromkeys(requested)]
    else:
        kinds = [k for k in runtimes.RUNNER_KINDS if runtimes.is_available(k)[0]]
    chosen = [Participant(k) for k in kinds if Participant(k) != reference]
    if fp16:
        chosen += [Participant(k, FP16) for k in kinds if runner_class(k).runs_fp16]
    return chosen


def existing_export(target: str | Path) -> ExportDir | None:
    """The export folder ``target`` names, or None for a model name (whose folder may not
    exist yet); a path that is not an export is refused."""
    folder = ExportDir(target)
    if not folder.path.exists() and _looks_like_path(str(target)):
        raise UsageError(f"export folder {target} does not exist; export one with crossrt "
                         "export-onnx MODEL --out DIR, or pass a model name")
    if folder.path.exists() and not folder.is_export():
        raise UsageError(f"{folder.path} is not a crossrt export (no {MANIFEST_FILE}); run "
                         "crossrt export-onnx first or pass a model name")
    return folder if folder.path.exists() else None


def target_spec(target: str | Path) -> ModelSpec:
    """The model ``target`` holds, known before anything is exported (so that every input
    is checked first): its manifest's, or the registry's for a model name."""
    folder = existing_export(target)
    return get_spec(folder.manifest()["model"] if folder else str(target))


def target_files(target: str | Path) -> list[Path]:
    """The files a command on ``target`` reads (an existing export's), which no output of the
    command may be written over."""
    folder = ExportDir(target)
    return folder.input_files() if folder.path.is_dir() else []


def resolve_target(target: str | Path, fp16: bool) -> tuple[Path, dict[str, Any], list[str]]:
    """The export folder, its manifest, and a warning per graph edited since export.

    A model name means its default export folder: used as it is when it exists (whatever its
    weights), exported first when it does not."""
    from exporter.export import default_export

    folder = existing_export(target) or ExportDir(default_export(str(target), fp16=fp16))
    manifest = folder.manifest()
    if fp16 and not folder.onnx_path(fp16=True).is_file():
        raise UsageError(f"{folder.path} has no {folder.onnx_path(fp16=True).name}; export it "
                         f"with crossrt export-onnx {manifest['model']} --out {folder.path} "
                         "--fp16 --force, or leave out --fp16")
    warnings = []
    for name in folder.edited_files(manifest, suffix=".onnx"):
        if (folder.path / name).is_file():
            read_onnx(folder.path / name)  # an edited graph must still parse
            warnings.append(f"{name} no longer matches the manifest's sha256 (edited after "
                            "export?); validating it as it is now")
    return folder.path, manifest, warnings


def _looks_like_path(target: str) -> bool:
    return os.sep in target or "/" in target or target.startswith(".")
