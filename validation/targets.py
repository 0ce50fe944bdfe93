"""What validate and accuracy share: the export they run, the reference and the runtimes beside
it, and how each one's runner is opened.

A target is an export folder, a model name or a Paddle inference model's folder (its default
export folder, exported first when it does not exist), or a bare model file
(validation.artifacts). The reference is Paddle Inference where it is installed (the ground
truth), else ONNX Runtime CPU; the runtimes beside it are those named, else every one available
here, each also at FP16 with ``fp16`` where its runner runs FP16. All of it is decided from the
runners' own declarations (``runtimes.base.Runner``), and checked before any work.
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
from exporter.inference_yml import is_inference_model, spec_from_folder
from exporter.specs import get_spec, spec_of
from runtimes.base import Runner
from runtimes.factory import require_available, runner_class
from validation.artifacts import BareFile, bare_file, is_bare_file


@dataclass(frozen=True)
class Participant:
    """One runner in a comparison: a runtime kind at a precision."""

    kind: str
    precision: Precision = FP32
    path: Path | None = None  # the model file it runs (--compare), else the target's

    @property
    def runner(self) -> type[Runner]:
        """Its runner class, with everything it declares about itself."""
        return runner_class(self.kind)

    @property
    def label(self) -> str:
        label = self.kind if self.precision == FP32 else f"{self.kind}-{self.precision}"
        return f"{label} ({self.path.name})" if self.path is not None else label

    @classmethod
    def parse(cls, label: str) -> tuple[str, Precision | None]:
        """A runtime as the user names it: its kind, or a row label of a table
        (``onnxruntime-fp16``): (kind, that precision or None)."""
        kind, _, suffix = label.rpartition("-")
        if kind and suffix in set(Precision):
            return kind, Precision(suffix)
        return label, None

    def open(self, export_dir: Path, **options: Any) -> Runner:
        """Its runner on the export (activate it with ``with``)."""
        log.info(f"loading {self.label}")
        fp16 = {"fp16": True} if self.precision == FP16 else {}
        return runtimes.create_runner(self.kind, self.path or export_dir, **fp16, **options)


def choose_reference(reference: str | None, bare: BareFile | None = None) -> Participant:
    """``reference`` (a kind or a row label), available here; by default the most preferred
    runner that is (``reference_rank``: Paddle Inference, else ONNX Runtime CPU FP32; for a
    bare file, the first that runs it)."""
    if reference is None:
        ranked = bare.kinds() if bare else runtimes.preferred("reference_rank")
        reference = next((k for k in ranked if runtimes.is_available(k)[0]), ranked[-1])
    kind, precision = Participant.parse(reference)
    if bare is not None:
        bare.check_runs_on(kind)
        return Participant(require_available(kind), bare.precision)
    return _participant(require_available(kind), precision or FP32)


def precisions(precision: Sequence[str] | None, fp16: bool) -> tuple[Precision, ...]:
    """What ``--precision`` and ``--fp16`` ask for, as everywhere in crossrt: the precisions
    named, else FP32, with FP16 added by ``--fp16``."""
    try:
        chosen = [Precision.parse(p) for p in precision or (FP32,)]
    except ValueError as error:
        raise UsageError(str(error)) from None
    return tuple(dict.fromkeys([*chosen, *((FP16,) if fp16 else ())]))


def participants(requested: Sequence[str] | None, reference: Participant,
                 wanted: Sequence[Precision] = (FP32,),
                 bare: BareFile | None = None) -> list[Participant]:
    """The runtimes beside the reference: ``requested`` (kinds, each available here, or row
    labels such as ``onnxruntime-fp16``), else every one available here; each at every
    ``wanted`` precision its runner runs (FP16: the FP16 graph, or engine). A bare file runs
    as it is, on the runtimes that run it, at its own precision."""
    named = [Participant.parse(label) for label in dict.fromkeys(requested or ())]
    if requested is None:
        named = [(k, None) for k in (bare.kinds() if bare else runtimes.RUNNER_KINDS)
                 if runtimes.is_available(k)[0]]
    for kind, _ in named:
        require_available(kind)
    if bare is not None:
        if FP16 in wanted or any(precision for _, precision in named):
            raise UsageError(f"{bare.path.name} runs as it is, at its own precision; leave out "
                             "--fp16/--precision and -fp16 runtimes (or give an export folder, "
                             "whose FP16 graph and engine are its own)")
        for kind, _ in named:
            bare.check_runs_on(kind)
        return [p for p in dict.fromkeys(Participant(kind, bare.precision) for kind, _ in named)
                if p != reference]
    chosen = [Participant(kind, each) for each in wanted for kind, precision in named
              if precision is None and (each == FP32 or runner_class(kind).runs_fp16)]
    chosen += [_participant(kind, precision) for kind, precision in named if precision]
    return [p for p in dict.fromkeys(chosen) if p != reference]


def _participant(kind: str, precision: Precision) -> Participant:
    if precision == FP16 and not runner_class(kind).runs_fp16:
        able = [k for k in runtimes.RUNNER_KINDS if runner_class(k).runs_fp16]
        raise UsageError(f"runtime {kind} does not run FP16 graphs (those that do: "
                         f"{', '.join(able)})")
    return Participant(kind, precision)


def existing_export(target: str | Path) -> ExportDir | None:
    """The export folder ``target`` names, or None for a model name or a Paddle inference model
    folder (exported on first use); a path that is neither is refused."""
    if is_inference_model(target) or is_bare_file(target):
        return None
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
    is checked first): a bare file's, its manifest's, an inference.yml's, or the registry's."""
    if (bare := bare_file(target)) is not None:
        return bare.spec
    folder = existing_export(target)
    if folder is not None:
        return spec_of(folder.manifest())
    return spec_from_folder(target) if is_inference_model(target) else get_spec(str(target))


def target_files(target: str | Path) -> list[Path]:
    """The files a command on ``target`` reads (an existing export's), which no output of the
    command may be written over."""
    if is_bare_file(target):
        return [Path(target)]
    folder = ExportDir(target)
    return folder.input_files() if folder.path.is_dir() else []


@dataclass(frozen=True)
class Lineup:
    """Who runs in a check, decided before any work: the target's spec (a bare file's own),
    the reference, and the runtimes beside it."""

    spec: ModelSpec
    reference: Participant
    participants: list[Participant]
    bare: BareFile | None


def line_up(target: str | Path, *, reference: str | None, requested: Sequence[str] | None,
            wanted: Sequence[Precision], spec: str | None = None,
            shapes: str | None = None) -> Lineup:
    """The check's runners and spec (``spec``/``shapes``: a bare file's, see artifacts)."""
    bare = bare_file(target, spec, shapes)
    ref = choose_reference(reference, bare)
    chosen = participants(requested, ref, wanted, bare)
    return Lineup(bare.spec if bare else target_spec(target), ref, chosen, bare)


def resolve_target(target: str | Path, fp16: bool, bare: BareFile | None = None,
                   ) -> tuple[Path, dict[str, Any], list[str]]:
    """The export folder (or the bare file), its manifest, and a warning per graph edited
    since export.

    A model name means its default export folder: used as it is when it exists (whatever its
    weights), exported first when it does not."""
    from exporter.export import default_export

    if bare is not None:
        return bare.path, {"weights": bare.weights()}, []

    folder = existing_export(target) or ExportDir(default_export(target, fp16=fp16))
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
