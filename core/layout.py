"""The export folder: its file names, its manifest, its Paddle program, and how it is replaced.

An export folder is what ``crossrt export-onnx`` writes and everything else reads:
``model.onnx``, ``model.fp16.onnx``, ``manifest.json``, ``paddle/inference.json`` +
``.pdiparams``, ``reference.npz``, and the engines ``build-engine`` writes beside them.
:class:`ExportDir` is the one place that knows these names, reads and checks the manifest
(a corrupt one is a one-line UsageError naming the file and the fix), finds the Paddle
program, and builds a new export in a staging folder beside the target that is renamed into
place at the end, under a lock that says who holds it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core import files, provenance
from core.errors import UsageError

ONNX_FILE = "model.onnx"
MANIFEST_FILE = "manifest.json"
GOLDEN_FILE = "reference.npz"
PADDLE2ONNX_LOG = "paddle2onnx.log"  # what paddle2onnx printed, kept for a failed conversion
PADDLE_DIR = "paddle"

def fp16_graph_name(onnx_name: str) -> str:
    """``model.onnx`` -> ``model.fp16.onnx``: the FP16 graph beside an FP32 one (an FP16 graph's
    name maps to itself)."""
    return f"{onnx_name.removesuffix('.onnx').removesuffix('.fp16')}.fp16.onnx"


FP16_FILE = fp16_graph_name(ONNX_FILE)


def engine_name(onnx_name: str, fp16: bool = False) -> str:
    """``model.onnx`` -> ``model.engine`` or ``model.fp16.engine``: what build-engine writes
    beside a graph by default (``model.fp16.onnx`` maps to the FP16 engine's name too)."""
    stem = onnx_name.removesuffix(".onnx").removesuffix(".fp16")
    return f"{stem}.fp16.engine" if fp16 else f"{stem}.engine"

PLAN_SUFFIXES = (".engine", ".plan", ".trt")  # TensorRT plans, as build-engine/trtexec save them
PADDLE_PROGRAM_STEM = "inference"  # what paddle.jit.save writes: inference.json + .pdiparams
PADDLE_PROGRAM_SUFFIXES = (".json", ".pdmodel")  # PIR program, legacy ProgramDesc
PADDLE_PARAMS_SUFFIX = ".pdiparams"
# What every manifest holds (the records crossrt reads back); newer ones hold more
MANIFEST_SCHEMA: files.Schema = {
    "model": str, "request": dict, "weights": dict, "files": dict, "nodes": dict,
    "preprocessing": dict, "inputs": list, "outputs": list,
    "check": {"max_abs_error": (int, float), "tolerance": (int, float), "passed": bool,
              "top1_agreement": (int, float, type(None))}}
_STAGING = ".crossrt-staging-"  # .NAME.crossrt-staging-XXXXXXXX (mkdtemp) or ...-old
_MKDTEMP_SUFFIX = 8


def _fix(path: Path) -> str:
    return f"export it again (crossrt export-onnx MODEL --out {path} --force)"


@dataclass(frozen=True)
class ExportDir:
    """One export folder (existing or to be written)."""

    path: Path

    def __init__(self, path: str | Path):  # a string is accepted and kept as a Path
        object.__setattr__(self, "path", Path(path))

    # --- names ---------------------------------------------------------------------------
    @property
    def manifest_path(self) -> Path:
        return self.path / MANIFEST_FILE

    @property
    def golden_path(self) -> Path:
        return self.path / GOLDEN_FILE

    def onnx_path(self, fp16: bool = False) -> Path:
        return self.path / (FP16_FILE if fp16 else ONNX_FILE)

    # --- the manifest --------------------------------------------------------------------
    def is_export(self) -> bool:
        """A manifest is there (it may still be corrupt: :meth:`manifest` says)."""
        return self.manifest_path.is_file()

    def manifest(self) -> dict[str, Any]:
        """The manifest, checked: a JSON object with every record crossrt reads from it (a
        corrupt or incomplete one is one UsageError naming the file and the fix)."""
        if not self.manifest_path.is_file() and not self.manifest_path.is_dir():
            raise UsageError(f"{self.path} is not a crossrt export (no {MANIFEST_FILE}); run "
                             "crossrt export-onnx MODEL --out DIR first")
        fix = _fix(self.path)
        manifest: dict[str, Any] = files.read_json(self.manifest_path, "manifest", fix,
                                                   MANIFEST_SCHEMA)
        for name, info in manifest["files"].items():
            if problem := files.schema_problem(info, {"sha256": str, "bytes": int}, name):
                raise UsageError(f"{self.manifest_path} is corrupt ({problem}); {fix}")
        return manifest

    def edited_files(self, manifest: dict[str, Any], suffix: str = "") -> list[str]:
        """The manifest's files (ending in ``suffix``) that are missing or changed since export."""
        def changed(path: Path, info: dict[str, Any]) -> bool:  # size first: no hash needed
            return not path.is_file() or path.stat().st_size != info["bytes"] \
                or provenance.sha256_file(path) != info["sha256"]

        return [name for name, info in manifest["files"].items()
                if name.endswith(suffix) and changed(self.path / name, info)]

    def foreign_entries(self, manifest: dict[str, Any] | None) -> list[str]:
        """Files that are not this export's own (user files an export may never delete).

        The export's own: the manifest and the files it lists, and what build-engine writes
        beside the graphs (engines, and the FP16 graph it converts when an FP16 engine is asked
        of an export without one). Without a usable manifest, the names an export can hold.
        """
        if not self.path.is_dir():
            return []
        converted = (FP16_FILE, f"{FP16_FILE}.data")
        own = {MANIFEST_FILE, *converted, *(manifest.get("files", {}) if manifest else
                                            (ONNX_FILE, GOLDEN_FILE, PADDLE2ONNX_LOG,
                                             f"{ONNX_FILE}.data",
                                             *(f"{PADDLE_DIR}/{PADDLE_PROGRAM_STEM}{suffix}"
                                               for suffix in (*PADDLE_PROGRAM_SUFFIXES,
                                                              PADDLE_PARAMS_SUFFIX))))}
        engines = [f"{engine_name(ONNX_FILE, fp16)}{sidecar}"
                   for fp16 in (False, True) for sidecar in ("", ".json")]
        present = [p.relative_to(self.path).as_posix() for p in self.path.rglob("*")
                   if not p.is_dir()]
        return sorted(name for name in present if name not in own
                      and not ("/" not in name and _engine_name(name))
                      # what a crossrt process killed mid-write left (a temporary file or folder)
                      and not files.is_temp_of(name.split("/")[0], (*own, *engines)))

    def input_files(self) -> list[Path]:
        """What a command reading this export reads: the manifest and the files it lists
        (none when it is not an export): no output may be written over one of them."""
        if not self.is_export():
            return []
        try:
            listed = list(self.manifest()["files"])
        except UsageError:
            listed = []
        return [self.manifest_path, *(self.path / name for name in listed)]

    def engines(self) -> list[str]:
        """Engines (and their sidecars) built inside this folder."""
        return sorted(p.name for p in self.path.iterdir() if _engine_name(p.name)) \
            if self.path.is_dir() else []

    # --- the Paddle program --------------------------------------------------------------
    def paddle_program(self) -> Path:
        """The export's Paddle program (paddle/inference.json or legacy .pdmodel)."""
        return find_paddle_program(self.path)

    # --- building a new export -----------------------------------------------------------
    def check_replaceable(self, cwd: Path | None = None) -> None:
        """Refuse targets that an export cannot replace whole: the current folder or one of
        its parents, a file, the filesystem root."""
        resolved = self.path.resolve()
        here = (cwd or Path.cwd()).resolve()
        if resolved == here or resolved in here.parents or resolved.parent == resolved:
            raise UsageError(f"--out {self.path} is the current folder or one of its parents; "
                             "an export replaces its folder whole, so name a new folder "
                             "(e.g. --out exports/MODEL)")
        if self.path.exists() and not self.path.is_dir():
            raise UsageError(f"--out {self.path} is a file, not a folder; choose another --out")

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Serialise exports to this folder (:func:`core.files.locked`); under the lock no
        other export of it runs, so staging folders left beside it are a crash's and go."""
        with files.locked(self.path, "export"):
            for stale in self._staging_leftovers():
                shutil.rmtree(stale, ignore_errors=True)
            yield

    @contextlib.contextmanager
    def staging(self) -> Iterator[Path]:
        """A private folder beside the target, removed whatever happens."""
        stage = Path(tempfile.mkdtemp(prefix=self._staging_prefix(), dir=self.path.parent))
        try:
            yield stage
        finally:
            shutil.rmtree(stage, ignore_errors=True)

    def publish(self, stage: Path) -> None:
        """Move the finished export into place; an existing one is replaced only at the end."""
        stage.chmod(0o777 & ~files.umask())  # mkdtemp made it private; exports are not
        if self.path.exists():
            old = self.path.parent / f"{self._staging_prefix()}old"
            os.replace(self.path, old)
            os.replace(stage, self.path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(stage, self.path)

    def _staging_prefix(self) -> str:
        return files.derived_name(self.path.name, f"{_STAGING}{'0' * _MKDTEMP_SUFFIX}",
                                  prefix=".")[:-_MKDTEMP_SUFFIX]

    def _staging_leftovers(self) -> list[Path]:
        """This folder's own staging folders, matched literally (never a glob on its name)."""
        prefix = self._staging_prefix()
        return [p for p in self.path.parent.iterdir() if p.name.startswith(prefix)
                and (p.name[len(prefix):] == "old" or (len(p.name) - len(prefix) == _MKDTEMP_SUFFIX
                                                       and "." not in p.name[len(prefix):]))]


def _engine_name(name: str) -> bool:
    """What build-engine writes beside a graph: model[.fp16].engine and its .json sidecar."""
    return name.startswith("model") and name.endswith((".engine", ".engine.json"))


def find_paddle_program(target: str | Path) -> Path:
    """The Paddle inference program for an export dir, a program dir, a prefix or a file.

    Accepts ``DIR`` (with ``paddle/`` inside or the program itself), ``DIR/inference``
    (a prefix), or ``inference.json`` / ``inference.pdmodel``; its ``.pdiparams`` must be
    beside it. The answer is the program; its weights are ``program.with_suffix(".pdiparams")``.
    """
    target = Path(target)
    candidates: list[Path]
    if target.is_dir():
        folders = [target / PADDLE_DIR, target]
        candidates = [f / f"{PADDLE_PROGRAM_STEM}{s}" for f in folders
                      for s in PADDLE_PROGRAM_SUFFIXES]
        candidates += [p for f in folders if f.is_dir() for s in PADDLE_PROGRAM_SUFFIXES
                       for p in sorted(f.glob(f"*{s}"))
                       if p.with_suffix(PADDLE_PARAMS_SUFFIX).is_file()]
    elif target.suffix in PADDLE_PROGRAM_SUFFIXES:
        candidates = [target]
    else:
        candidates = [Path(f"{target}{s}") for s in PADDLE_PROGRAM_SUFFIXES]
    program = next((p for p in candidates if p.is_file()), None)
    if program is None:
        raise UsageError(f"no Paddle inference program at {target}: expected inference.json or "
                         "inference.pdmodel (with inference.pdiparams) there or in paddle/, as "
                         "written by PaddleClas's export script")
    params = program.with_suffix(PADDLE_PARAMS_SUFFIX)
    if not params.is_file():
        raise UsageError(f"{params.name} is missing beside {program}: a Paddle program needs "
                         "the weights file exported with it in the same folder")
    return program
