"""Bad and hostile input, case by case: one line on stderr, the right exit code, nothing lost.

Every case runs the real CLI (``crossrt.main`` in this process, or ``python -m crossrt`` where
signals, locks and process exit codes are the point) on a scratch folder and on copies of the
session's EfficientNetB0 export. Each asserts the exit code, that stderr holds exactly one
line that is not a ``crossrt:`` notice, with the expected words and no traceback, and that
every file that was there before is still there, byte for byte, with no staging folder or
lock file left behind. Exit codes: 1 a check ran and failed, 2 bad input, 3 a runtime fault.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from rt_fixtures import write_tiny_onnx

import crossrt
from core.layout import ExportDir
from exporter.pretrained import MIRROR_ENV

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}

Setup = Callable[[Path, Path], None]  # (scratch folder, the shared export) -> None


@dataclass(frozen=True)
class Case:
    id: str
    argv: tuple[str, ...]  # {tmp} is the scratch folder, {export} the shared B0 export
    code: int
    fragment: str  # in the one error line ("": no error line at all)
    setup: Setup | None = None
    chdir: bool = False  # run with the scratch folder as the current folder
    process: bool = False  # a real `python -m crossrt` process, not crossrt.main in this one
    stdout: str = "pipe"  # process only: "closed" (its reader went away), "full" (/dev/full)
    env: tuple[tuple[str, str], ...] = ()  # process only: variables set for it


# --- setups: what is on disk before the command ------------------------------------------

def user_folder(tmp: Path, export: Path) -> None:
    (tmp / "mine").mkdir()
    (tmp / "mine" / "thesis.tex").write_text("years of work\n")
    (tmp / "mine" / "data").mkdir()
    (tmp / "mine" / "data" / "results.csv").write_text("a,b\n1,2\n")


def copy_export(edit: Callable[[Path], None] | None = None) -> Setup:
    """A copy of the export at {tmp}/copy, then ``edit`` applied to it."""
    def setup(tmp: Path, export: Path) -> None:
        shutil.copytree(export, tmp / "copy")
        if edit is not None:
            edit(tmp / "copy")
    return setup


def edit_manifest(change: Callable[[dict], None]) -> Callable[[Path], None]:
    def edit(folder: Path) -> None:
        manifest = json.loads((folder / "manifest.json").read_text())
        change(manifest)
        (folder / "manifest.json").write_text(json.dumps(manifest))
    return edit


def write(name: str, data: bytes | str) -> Callable[[Path], None]:
    def edit(folder: Path) -> None:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data.encode() if isinstance(data, str) else data)
    return edit


def truncate(name: str, keep: int) -> Callable[[Path], None]:
    def edit(folder: Path) -> None:
        data = (folder / name).read_bytes()
        (folder / name).write_bytes(data[:keep])
    return edit


def tiny_onnx(name: str) -> Callable[[Path], None]:
    def edit(folder: Path) -> None:
        write_tiny_onnx(folder / name)
    return edit


def custom_op_onnx(name: str) -> Callable[[Path], None]:
    """Relu then an op of a domain TensorRT has no importer for (``com.example.FancyOp``)."""
    def edit(folder: Path) -> None:
        import onnx
        from onnx import TensorProto, helper

        graph = helper.make_graph(
            [helper.make_node("Relu", ["x"], ["a"], name="relu0"),
             helper.make_node("FancyOp", ["a"], ["y"], name="my_fancy", domain="com.example")],
            "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3, 8, 8])])
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13),
                                                          helper.make_opsetid("com.example", 1)]),
                  str(folder / name))
    return edit


def in_tmp(*edits: Callable[[Path], None]) -> Setup:
    def setup(tmp: Path, export: Path) -> None:
        for edit in edits:
            edit(tmp)
    return setup


def checkpoint(change: Callable[[dict], None]) -> Setup:
    """{tmp}/ckpt.pdparams: an EfficientNetB0_small state_dict of zeros, then ``change``."""
    def setup(tmp: Path, export: Path) -> None:
        import paddle

        from exporter.specs import get_spec
        from exporter.zoo import build_model

        with paddle.LazyGuard():
            state = {k: np.zeros(v.shape, np.float32)
                     for k, v in build_model(get_spec("EfficientNetB0_small")).state_dict().items()}
        change(state)
        paddle.save(state, str(tmp / "ckpt.pdparams"))
    return setup


FIRST_KEY = "_ef._conv_stem._conv._conv._conv.weight"


def as_float64(state: dict) -> None:
    state[FIRST_KEY] = state[FIRST_KEY].astype(np.float64)


def with_nan(state: dict) -> None:
    state[FIRST_KEY][0, 0, 0, 0] = np.nan


def paddle_model(program: bytes | None = None, params_keep: int | None = None,
                 program_name: str = "inference.json") -> Setup:
    """{tmp}/pm: the export's Paddle program, its program replaced or its weights truncated."""
    def setup(tmp: Path, export: Path) -> None:
        (tmp / "pm").mkdir()
        source = export / "paddle"
        (tmp / "pm" / program_name).write_bytes(
            program if program is not None else (source / "inference.json").read_bytes())
        params = (source / "inference.pdiparams").read_bytes()
        (tmp / "pm" / "inference.pdiparams").write_bytes(params[:params_keep])
    return setup


def golden(change: Callable[[dict], None]) -> Setup:
    def setup(tmp: Path, export: Path) -> None:
        with np.load(export / "reference.npz") as data:
            arrays = dict(data)
        change(arrays)
        np.savez(tmp / "golden.npz", **arrays)
    return setup


def fewer_names(arrays: dict) -> None:
    arrays["names"] = arrays["names"][:2]


def bad_jpeg(tmp: Path) -> None:
    (tmp / "imgs").mkdir()
    (tmp / "imgs" / "cat.jpg").write_bytes(b"\xff\xd8 not really a jpeg")


B0, SMALL = "EfficientNetB0", "EfficientNetB0_small"
EXPORT_B0 = ("export-onnx", B0, "--fp16", "--out", "{tmp}/copy")  # the copy's own request
VALIDATE = ("validate", "{export}")
COPY = "{tmp}/copy"
NOT_FOUND = "/no/such/dir"

CASES = [
    # --- data loss: --force replaces only a crossrt export, a different request is refused
    Case("force-on-a-user-folder", ("export-onnx", SMALL, "--out", "{tmp}/mine", "--force"), 2,
         "not a crossrt export", user_folder),
    Case("user-folder-without-force", ("export-onnx", SMALL, "--out", "{tmp}/mine"), 2,
         "not a crossrt export", user_folder),
    Case("force-on-an-export-holding-user-files", (*EXPORT_B0, "--force"), 2,
         "notes.txt", copy_export(write("notes.txt", "mine"))),
    Case("force-on-an-export-with-user-files-inside", (*EXPORT_B0, "--force"), 2,
         "paddle/notes.txt", copy_export(write("paddle/notes.txt", "mine"))),
    Case("force-on-a-damaged-export-holding-user-files", (*EXPORT_B0, "--force"), 2,
         "thesis.tex", copy_export(lambda f: (truncate("manifest.json", 10)(f),
                                              write("thesis.tex", "mine")(f)))),
    Case("synthetic-over-a-checkpoint-export", EXPORT_B0, 2, "weights: on disk checkpoint",
         copy_export(edit_manifest(lambda m: m["request"].update(
             weights={"kind": "checkpoint", "sha256": "ab" * 32})))),
    Case("other-seed", (*EXPORT_B0, "--seed", "7"), 2, "asked synthetic (seed 7)",
         copy_export()),
    Case("other-opset", (*EXPORT_B0, "--opset", "12"), 2, "opset: on disk 13, asked 12",
         copy_export()),
    Case("no-simplify", (*EXPORT_B0, "--no-simplify"), 2, "simplify: on disk True",
         copy_export()),
    Case("paddle-model-over-synthetic", (*EXPORT_B0, "--paddle-model", "{export}/paddle"), 2,
         "asked paddle-model", copy_export()),
    Case("fp16-added-would-remove-an-engine", EXPORT_B0, 2, "fp16: on disk without",
         copy_export(lambda f: (edit_manifest(lambda m: m["request"].update(fp16=False))(f),
                                write("model.engine", b"plan")(f)))),
    Case("edited-export", EXPORT_B0, 2, "modified after export (model.onnx)",
         copy_export(write("model.onnx", b"\x08\x07edited"))),
    Case("out-is-the-current-folder", ("export-onnx", SMALL, "--out", ".", "--force"), 2,
         "current folder", user_folder, chdir=True),
    Case("out-is-a-parent-of-the-current-folder", ("export-onnx", SMALL, "--out", ".."), 2,
         "current folder", user_folder, chdir=True),
    Case("out-is-a-file", ("export-onnx", SMALL, "--out", "{tmp}/f.txt", "--force"), 2,
         "is a file", in_tmp(write("f.txt", "mine"))),
    Case("out-below-a-file", ("export-onnx", SMALL, "--out", "{tmp}/f.txt/out"), 2,
         "cannot write", in_tmp(write("f.txt", "mine"))),
    Case("glob-in-out-spares-other-staging-folders",
         ("export-onnx", SMALL, "--out", "{tmp}/exports/*", "--weights", "{tmp}/bogus.pdparams"),
         2, "bogus.pdparams", in_tmp(write("exports/.B0.crossrt-staging-abcd1234/model.onnx", "x"),
                                     write("exports/.x.tmp-abcdefgh/keep", "x"),
                                     write("bogus.pdparams", "not a checkpoint"))),
    # --- corrupt export folders
    Case("truncated-manifest", EXPORT_B0, 2, "manifest.json is corrupt (not JSON",
         copy_export(truncate("manifest.json", 100))),
    Case("manifest-is-a-list", EXPORT_B0, 2, "a JSON list, not an object",
         copy_export(write("manifest.json", "[1, 2]"))),
    Case("manifest-without-model", EXPORT_B0, 2, "no 'model'",
         copy_export(write("manifest.json", "{}"))),
    Case("manifest-files-not-an-object", EXPORT_B0, 2, "'files' is a list",
         copy_export(edit_manifest(lambda m: m.update(files=[1])))),
    Case("validate-truncated-manifest", ("validate", COPY), 2, "manifest.json is corrupt",
         copy_export(truncate("manifest.json", 10))),
    Case("validate-manifest-is-a-string", ("validate", COPY), 2, "a JSON str",
         copy_export(write("manifest.json", '"export"'))),
    Case("validate-truncated-onnx", ("validate", COPY, "--runtimes", "onnxruntime"), 2,
         "not a readable ONNX model", copy_export(truncate("model.onnx", 5000))),
    Case("validate-fp16-missing", ("validate", COPY, "--fp16"), 2, "has no model.fp16.onnx",
         copy_export(lambda f: (f / "model.fp16.onnx").unlink())),
    # --- export arguments and inputs
    Case("negative-seed", ("export-onnx", SMALL, "--seed", "-1"), 2,
         "--seed must be between 0 and"),
    Case("unsupported-opset", ("export-onnx", SMALL, "--opset", "9"), 2, "opset 9"),
    Case("unknown-model", ("export-onnx", "EfficientNetB9"), 2, "did you mean"),
    Case("weights-and-paddle-model", ("export-onnx", SMALL, "--weights", "a", "--paddle-model",
                                      "b"), 2, "not allowed with"),
    Case("weights-is-a-folder", ("export-onnx", SMALL, "--weights", "{tmp}"), 2,
         "is a folder, not a file"),
    Case("weights-missing", ("export-onnx", SMALL, "--weights", "{tmp}/none.pdparams"), 2,
         "does not exist"),
    Case("weights-not-a-checkpoint", ("export-onnx", SMALL, "--weights", "{tmp}/x.pdparams",
                                      "--out", "{tmp}/o"), 2, "not a readable Paddle checkpoint",
         in_tmp(write("x.pdparams", "garbage" * 20))),
    Case("weights-float64-tensor", ("export-onnx", SMALL, "--weights", "{tmp}/ckpt.pdparams",
                                    "--out", "{tmp}/o"), 2, f"{FIRST_KEY} is float64",
         checkpoint(as_float64)),
    Case("weights-with-nan", ("export-onnx", SMALL, "--weights", "{tmp}/ckpt.pdparams",
                              "--out", "{tmp}/o"), 2, f"{FIRST_KEY} holds 1 NaN/Inf",
         checkpoint(with_nan)),
    Case("paddle-model-missing", ("export-onnx", SMALL, "--paddle-model", NOT_FOUND), 2,
         "no Paddle inference program"),
    Case("paddle-model-without-weights", ("export-onnx", SMALL, "--paddle-model", "{tmp}"), 2,
         "inference.pdiparams is missing", in_tmp(write("inference.json", "{}"))),
    Case("paddle-model-random-json", ("export-onnx", B0, "--paddle-model", "{tmp}/pm", "--out",
                                      "{tmp}/o"), 2, "Paddle cannot run",
         paddle_model(program=bytes(range(256)) * 8)),
    Case("paddle-model-random-pdmodel", ("export-onnx", B0, "--paddle-model", "{tmp}/pm",
                                         "--out", "{tmp}/o"), 2, "is not a Paddle program",
         paddle_model(program=bytes(range(256)) * 8, program_name="inference.pdmodel")),
    Case("paddle-model-truncated-weights", ("export-onnx", B0, "--paddle-model", "{tmp}/pm",
                                            "--out", "{tmp}/o"), 2, "truncated",
         paddle_model(params_keep=1_000_000)),
    Case("paddle-model-of-another-network", ("export-onnx", SMALL, "--paddle-model",
                                             "{export}/paddle", "--out", "{tmp}/o"), 2,
         "another network"),
    Case("paddle-model-of-b0-as-b1", ("export-onnx", "EfficientNetB1", "--paddle-model",
                                      "{export}", "--out", "{tmp}/o"), 2, "another network"),
    # --- validate arguments, checked before any work
    Case("validate-missing-folder", ("validate", NOT_FOUND), 2, "does not exist"),
    Case("validate-relative-missing-folder", ("validate", "./nope"), 2, "does not exist"),
    Case("validate-not-an-export", ("validate", "{tmp}/mine"), 2, "not a crossrt export",
         user_folder),
    Case("validate-unknown-model", ("validate", "NoSuchNet"), 2, "unknown model"),
    Case("validate-runtimes-empty", (*VALIDATE, "--runtimes", ""), 2, "nothing to compare"),
    Case("validate-only-the-reference", (*VALIDATE, "--runtimes", "paddle"), 2,
         "nothing to compare"),
    Case("validate-reference-is-the-runtime", (*VALIDATE, "--runtimes", "onnxruntime",
                                               "--reference", "onnxruntime"), 2,
         "nothing to compare"),
    Case("validate-unknown-runtime", (*VALIDATE, "--runtimes", "tensorflow"), 2,
         "unknown runtime 'tensorflow'"),
    Case("validate-unavailable-runtime", (*VALIDATE, "--runtimes", "onnxruntime-cuda"), 2,
         "not available"),
    Case("validate-unknown-reference", (*VALIDATE, "--reference", "torch"), 2,
         "unknown runtime 'torch'"),
    Case("validate-empty-batch-sizes", (*VALIDATE, "--batch-sizes", ","), 2,
         "expected a comma-separated list"),
    Case("validate-zero-batch", (*VALIDATE, "--batch-sizes", "0"), 2, "at least 1"),
    Case("validate-batch-cannot-fit", (*VALIDATE, "--batch-sizes", "1,10000000"), 2,
         "batch size 10000000 of EfficientNetB0 needs about"),
    Case("validate-negative-seed", (*VALIDATE, "--seed", "-3"), 2,
         "--seed must be between 0 and"),
    Case("validate-negative-random", (*VALIDATE, "--random", "-1"), 2,
         "--random must be between 0 and"),
    Case("validate-negative-atol", (*VALIDATE, "--atol", "-1"), 2,
         "tolerances must be finite and >= 0"),
    Case("validate-top1-over-1", (*VALIDATE, "--min-top1-agreement", "2"), 2, "within [0, 1]"),
    Case("validate-unknown-error-stat", (*VALIDATE, "--check-error-stat", "p50"), 2,
         "invalid choice"),
    Case("validate-json-is-a-folder", (*VALIDATE, "--json", "{tmp}"), 2, "is a folder"),
    Case("validate-json-below-a-file", (*VALIDATE, "--json", "{tmp}/f.txt/r.json"), 2,
         "is a file, not a folder", in_tmp(write("f.txt", "mine"))),
    Case("validate-markdown-is-a-folder", (*VALIDATE, "--markdown", "{tmp}"), 2, "is a folder"),
    Case("validate-save-outputs-is-a-folder", (*VALIDATE, "--save-outputs", "{tmp}"), 2,
         "is a folder"),
    Case("validate-images-is-a-file", (*VALIDATE, "--images", "{tmp}/f.txt"), 2,
         "is a file, not a folder", in_tmp(write("f.txt", "mine"))),
    Case("validate-images-missing", (*VALIDATE, "--images", NOT_FOUND), 2, "does not exist"),
    Case("validate-images-empty", (*VALIDATE, "--images", "{tmp}"), 2, "no JPEG/PNG images"),
    Case("validate-images-corrupt", (*VALIDATE, "--images", "{tmp}/imgs", "--runtimes",
                                     "onnxruntime"), 2, "cannot read image", in_tmp(bad_jpeg)),
    Case("validate-load-outputs-missing", (*VALIDATE, "--load-outputs", "{tmp}/r.json"), 2,
         "does not exist"),
    Case("validate-load-outputs-folder", (*VALIDATE, "--load-outputs", "{tmp}"), 2,
         "is a folder, not a file"),
    Case("validate-load-outputs-not-json", (*VALIDATE, "--load-outputs", "{tmp}/r.json"), 2,
         "not valid JSON", in_tmp(write("r.json", "{truncated"))),
    Case("validate-golden-truncated", (*VALIDATE, "--load-outputs", f"{COPY}/reference.npz"),
         2, "cannot read golden outputs", copy_export(truncate("reference.npz", 3000))),
    Case("validate-golden-rows-disagree", (*VALIDATE, "--load-outputs", "{tmp}/golden.npz"), 2,
         "names 2 rows", golden(fewer_names)),
    # --- bench and pipeline: every argument and the runtime before any work
    Case("validate-infinite-atol", ("validate", "{export}", "--atol", "inf"), 2,
         "must be finite"),
    Case("bench-json-is-a-folder", ("bench", SMALL, "--json", "{tmp}", "--results", "{tmp}/b"), 2,
         "is a folder"),
    Case("bench-out-is-a-file", ("bench", SMALL, "--results", "{tmp}/f.txt"), 2,
         "is a file, not a folder", in_tmp(write("f.txt", "mine"))),
    Case("bench-no-model", ("bench",), 2, "name at least one model"),
    Case("bench-models-and-all", ("bench", SMALL, "--all"), 2, "not both"),
    Case("bench-unknown-model", ("bench", "NoSuchNet"), 2, "unknown model"),
    Case("bench-unknown-precision", ("bench", SMALL, "--precision", "fp8"), 2,
         "unknown precision"),
    Case("bench-unknown-table", ("bench", SMALL, "--table", "a100"), 2, "invalid choice"),
    Case("bench-resume-from-garbage", ("bench", SMALL, "--results", "{tmp}", "--resume"), 2,
         "is not a bench result crossrt wrote", in_tmp(write("bench.json", "[]"))),
    Case("bench-every-cell-failed", ("bench", SMALL, "--results", "{tmp}/b", "--precision", "fp32",
                                     "--batch-sizes", "1"), 1, "every cell failed",
         in_tmp(write(f"artifacts/{SMALL}/thesis.tex", "mine")), chdir=True),
    Case("pipeline-unknown-runtime", ("pipeline", SMALL, "--runtime", "bogus"), 2,
         "unknown runtime 'bogus'"),
    Case("pipeline-unavailable-runtime", ("pipeline", SMALL, "--runtime", "tensorrt"), 2,
         "not available"),
    Case("pipeline-duration-inf", ("pipeline", SMALL, "--duration-s", "inf"), 2,
         "--duration-s must be between 0 and 3,600 s"),
    Case("pipeline-unknown-model", ("pipeline", "NoSuchNet"), 2, "unknown model"),
    Case("pipeline-out-is-the-current-folder", ("pipeline", SMALL, "--out", "."), 2,
         "current folder", user_folder, chdir=True),
    Case("pipeline-out-is-a-user-folder", ("pipeline", SMALL, "--out", "{tmp}/mine",
                                           "--duration-s", "0.1"), 2, "not a crossrt export",
         user_folder),
    # --- build-engine: files, graphs TensorRT cannot take, requests a backend refuses
    Case("build-engine-onnx-is-a-folder", ("build-engine", "--onnx", "{tmp}"), 2,
         "is a folder, not a file"),
    Case("build-engine-onnx-missing", ("build-engine", "--onnx", "{tmp}/model.onnx"), 2,
         "does not exist"),
    *(Case(f"build-engine-{name}", ("build-engine", "--onnx", "{tmp}/m/model.onnx",
                                    "--saveEngine", "{tmp}/out.engine", *flags), 2, words,
           in_tmp(*(setup or (tiny_onnx("m/model.onnx"),))))
      for name, flags, words, setup in (
          ("custom-op", ("--optShapes", "x:2x3x8x8"), "node 'my_fancy' (op FancyOp, number 1)",
           (custom_op_onnx("m/model.onnx"),)),
          ("corrupt-onnx", (), "not a readable ONNX model",
           (tiny_onnx("m/model.onnx"), truncate("m/model.onnx", 200))),
          ("tiny-workspace", ("--backend", "tensorrt-rtx", "--memPoolSize", "workspace:1K"),
           "is too small for model.onnx", None),
          ("data-center-target", ("--backend", "tensorrt-rtx", "--computeCapabilities", "9.0"),
           "no compute capability 9.0 target", None),
          ("bad-target", ("--computeCapabilities", "86"), "bad compute capability", None),
          ("rtx-timing-cache", ("--backend", "tensorrt-rtx", "--timingCacheFile", "{tmp}/t"),
           "keeps no timing cache", None),
          ("rtx-dla-pool", ("--backend", "tensorrt-rtx", "--memPoolSize", "dlaSRAM:1M"),
           "has no DLA", None),
          ("unknown-backend", ("--backend", "trt"), "invalid choice", None),
          ("engine-is-a-folder", ("--saveEngine", "{tmp}"), "is a folder", None),
          ("bad-shape", ("--optShapes", "x:1x3x-2"), "bad shape", None),
          ("shape-of-another-input", ("--optShapes", "y:1x3x32x32"), "not an input", None),
          ("optimization-level", ("--builderOptimizationLevel", "9"), "0..5", None),
      )),
    Case("no-command", (), 2, "required"),
    Case("unknown-command", ("frobnicate",), 2, "invalid choice"),
]

# bench's arguments, each refused before any export or timing: (case, arguments, words)
BENCH_ARGUMENTS = [
    ("unknown-runtime", ("--runtime", "bogus"), "unknown runtime 'bogus'"),
    ("unavailable-runtime", ("--runtime", "onnxruntime-cuda"), "not available"),
    ("duration-inf", ("--duration-s", "inf"), "--duration-s must be between 0 and 3,600 s"),
    ("duration-nan", ("--duration-s", "nan"), "--duration-s must be between"),
    ("duration-negative", ("--duration-s", "-1"), "--duration-s must be between"),
    ("duration-1e300", ("--duration-s", "1e300"), "got 1e+300"),
    ("warmup-nan", ("--warmup-ms", "nan"), "--warmup-ms must be between"),
    ("warmup-1e300", ("--warmup-ms", "1e300"), "--warmup-ms must be between 0 and 600,000 ms"),
    ("min-iterations-0", ("--min-iterations", "0"), "--min-iterations must be between 1 and"),
    ("threads-10000", ("--threads", "10000"), "--threads must be between 1 and"),
    ("threads-2-to-the-40", ("--threads", str(2**40)), "--threads must be between 1 and"),
    ("empty-batch-sizes", ("--batch-sizes", ","), "expected a comma-separated list"),
    ("zero-batch", ("--batch-sizes", "0"), "at least 1"),
    ("zero-threads", ("--threads", "0"), "--threads must be"),
    ("batch-cannot-fit", ("--batch-sizes", "10000000"), "use smaller --batch-sizes"),
]
CASES += [Case(f"bench-{name}", ("bench", SMALL, *arguments), 2, words)
          for name, arguments, words in BENCH_ARGUMENTS]


# --- round 3 (issue 16): outputs over inputs, bounds, sizes, closed streams, resumes ---------

def sparse(name: str, size: int = 1 << 40) -> Callable[[Path], None]:
    """A file of ``size`` bytes (1 TiB by default) that takes no room on disk."""
    def edit(folder: Path) -> None:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as handle:
            handle.truncate(size)
    return edit


def photos(name: str = "imgs", count: int = 4, label_file: str | None = None,
           encoding: str = "utf-8") -> Callable[[Path], None]:
    """``count`` JPEGs (the bundled photographs, cycled) and, with ``label_file``, a
    PaddleClas list file of them in ``encoding`` ("utf-8-sig": with a byte-order mark)."""
    def edit(folder: Path) -> None:
        import cv2

        from core.preprocess import bundled_photos

        (folder / name).mkdir(parents=True, exist_ok=True)
        shots = bundled_photos()
        lines = []
        for index in range(count):
            photo = shots[index % len(shots)][1]
            cv2.imwrite(str(folder / name / f"{index:03d}.jpg"), photo[:, :, ::-1])
            lines.append(f"{index:03d}.jpg {index % 10}")
        if label_file:
            (folder / label_file).write_bytes("\n".join(lines).encode(encoding))
    return edit


def tall_png(folder: Path) -> None:
    """A 1x5000 PNG: under 100 bytes on disk, 1.3 million pixels wide once resized."""
    import cv2

    (folder / "imgs").mkdir()
    cv2.imwrite(str(folder / "imgs" / "tall.png"), np.zeros((5000, 1, 3), np.uint8))


def tiny_disk(room: int, copy: str | None = None,
              read_only: bool = False) -> Callable[[Path, Path], None]:
    """A real small disk at {tmp}/disk (a tmpfs, taken down after the case) with ``room`` bytes
    free, after ``copy`` (a file of the export) was put on it; or an empty read-only one."""
    def setup(tmp: Path, export: Path) -> None:
        disk = tmp / "disk"
        disk.mkdir()
        size = (export / copy).stat().st_size if copy else 0
        options = "ro,size=1m" if read_only else f"size={size + (8 << 20)}"
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(disk)],
                                 capture_output=True, text=True)
        if mounted.returncode:
            pytest.skip(f"a small disk cannot be mounted here: {mounted.stderr.strip()}")
        if read_only:
            return
        if copy:
            shutil.copy(export / copy, disk / copy)
        free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
        with open(disk / "filler", "wb") as filler:
            filler.write(b"\0" * max(free - room, 0))
    return setup


def saved_outputs_of(model: str) -> Setup:
    """{tmp}/other.json: outputs saved by validate from an export of ``model``."""
    def setup(tmp: Path, export: Path) -> None:
        from core.spec import FP32
        from validation.results import SavedIteration, SavedResults, SavedRun, save_results

        feed = {"x": np.zeros((1, 3, 224, 224), np.float32)}
        save_results(tmp / "other.json", SavedResults(
            runs=(SavedRun("onnxruntime", ({"logits": np.zeros((1, 1000), np.float32)},),
                           precision=FP32),),
            iterations=(SavedIteration.from_feed(feed, ["zeros"]),), model=model))
    return setup


def journal_with(row: dict) -> Setup:
    """{tmp}/p.jsonl: the journal of a real accuracy run on {tmp}/imgs, then ``row`` added."""
    def setup(tmp: Path, export: Path) -> None:
        photos(count=4, label_file="list.txt")(tmp)
        assert crossrt.main(["accuracy", str(export), "--dataset", str(tmp / "imgs"), "--labels",
                             str(tmp / "list.txt"), "--reference", "onnxruntime", "--runtimes",
                             "", "--predictions", str(tmp / "p.jsonl")]) == 0
        with open(tmp / "p.jsonl", "a") as journal:
            journal.write(json.dumps(row) + "\n")
    return setup


def bench_results(tmp: Path, export: Path) -> None:
    """{tmp}/artifacts/EfficientNetB0 (the export) and {tmp}/b: one real bench sweep of it."""
    shutil.copytree(export, tmp / "artifacts" / B0)
    here = Path.cwd()
    os.chdir(tmp)
    try:
        assert crossrt.main(["bench", B0, "--results", "b", *QUICK_BENCH]) == 0
    finally:
        os.chdir(here)


def bench_record_without(key: str) -> Setup:
    def setup(tmp: Path, export: Path) -> None:
        bench_results(tmp, export)
        document = json.loads((tmp / "b" / "bench.json").read_text())
        del document["records"][0][key]
        (tmp / "b" / "bench.json").write_text(json.dumps(document))
    return setup


QUICK_BENCH = ("--precision", "fp32", "--batch-sizes", "1", "--duration-s", "0.05",
               "--warmup-ms", "1", "--min-iterations", "2", "--runtime", "onnxruntime")
ACCURACY_ORT = ("--reference", "onnxruntime", "--runtimes", "")
ENGINE = ("build-engine", "--onnx", f"{COPY}/model.onnx")

ROUND_3 = [
    # --- an output over an input, or over a file crossrt did not write
    Case("engine-over-its-onnx", (*ENGINE, "--saveEngine", f"{COPY}/model.onnx"), 2,
         "is also the input --onnx", copy_export()),
    Case("sidecar-over-the-manifest", (*ENGINE, "--saveEngine", f"{COPY}/manifest"), 2,
         "is also the input the export's manifest", copy_export()),
    Case("engine-over-a-user-file", (*ENGINE, "--saveEngine", "{tmp}/notes.txt"), 2,
         "exists and is not a TensorRT engine crossrt wrote", copy_export(write("../notes.txt",
                                                                              "mine"))),
    Case("sidecar-over-a-user-file", (*ENGINE, "--saveEngine", "{tmp}/e.plan"), 2,
         "is not an engine sidecar crossrt wrote", copy_export(write("../e.plan.json", "{}"))),
    Case("sidecar-without-its-build-record", (*ENGINE, "--saveEngine", f"{COPY}/model.engine"),
         2, "is not an engine sidecar crossrt wrote",
         copy_export(write("model.engine.json", '{"engine": "model.engine"}'))),
    Case("predictions-over-the-labels", ("accuracy", "{export}", "--dataset", "{tmp}/imgs",
                                         "--labels", "{tmp}/list.txt", "--predictions",
                                         "{tmp}/list.txt"), 2, "is also the input --labels",
         in_tmp(photos(label_file="list.txt"))),
    Case("report-over-the-labels", ("accuracy", "{export}", "--dataset", "{tmp}/imgs",
                                    "--labels", "{tmp}/list.txt", "--json", "{tmp}/list.txt"), 2,
         "is also the input --labels", in_tmp(photos(label_file="list.txt"))),
    Case("save-outputs-over-load-outputs", (*VALIDATE, "--load-outputs", "{tmp}/other.json",
                                            "--save-outputs", "{tmp}/other.json"), 2,
         "is also the input --load-outputs", saved_outputs_of(B0)),
    Case("report-over-the-exported-graph", ("validate", COPY, "--markdown", f"{COPY}/model.onnx"),
         2, "is also the input", copy_export()),
    Case("json-and-markdown-one-file", (*VALIDATE, "--json", "{tmp}/r", "--markdown", "{tmp}/r"),
         2, "are the same file"),
    Case("zoo-json-over-a-user-file", ("zoo", "--json", "{tmp}/notes.txt"), 2,
         "is not a zoo table crossrt wrote", in_tmp(write("notes.txt", "mine"))),
    Case("runtimes-json-over-a-user-file", ("runtimes", "--json", "{tmp}/notes.txt"), 2,
         "is not a runtimes table crossrt wrote", in_tmp(write("notes.txt", "mine"))),
    Case("bench-over-a-user-report", ("bench", SMALL, "--results", "{tmp}"), 2,
         "is not a bench report crossrt wrote", in_tmp(write("bench.md", "my notes"))),
    Case("export-input-inside-its-out", ("export-onnx", B0, "--paddle-model", f"{COPY}/paddle",
                                         "--out", COPY, "--force"), 2,
         "lies inside --out", copy_export()),
    # --- numbers without bounds, files too large to read
    Case("validate-random-1e8", (*VALIDATE, "--random", "100000000"), 2,
         "--random must be between 0 and 10,000"),
    Case("accuracy-batch-cannot-fit", ("accuracy", "{export}", "--dataset", "{tmp}/imgs",
                                       "--batch-size", "10000000"), 2,
         "batch size 10000000 of EfficientNetB0 needs about", in_tmp(photos("imgs/c"))),
    Case("accuracy-workers-100000", ("accuracy", "{export}", "--dataset", "{tmp}/imgs",
                                     "--workers", "100000"), 2, "--workers must be between 0 and",
         in_tmp(photos("imgs/c"))),
    Case("workspace-zero", (*ENGINE, "--saveEngine", "{tmp}/e", "--memPoolSize", "workspace:0"),
         2, "out of range", copy_export()),
    Case("workspace-petabytes", (*ENGINE, "--saveEngine", "{tmp}/e", "--memPoolSize",
                                 "workspace:2000000G"), 2, "at most 1 TiB", copy_export()),
    Case("max-shapes-past-tensorrt", (*ENGINE, "--saveEngine", "{tmp}/e", "--minShapes",
                                      "x:1x3x224x224", "--optShapes", "x:1x3x224x224",
                                      "--maxShapes", "x:100000x3x224x224"), 2,
         "past TensorRT's 2,147,483,647 per tensor", copy_export()),
    Case("turing-without-fp16", (*ENGINE, "--saveEngine", "{tmp}/e", "--backend", "tensorrt-rtx",
                                 "--computeCapabilities", "7.5"), 2, "add --fp16", copy_export()),
    Case("image-of-a-terabyte", (*VALIDATE, "--images", "{tmp}/imgs"), 2,
         "past crossrt's limit of 256 MiB", in_tmp(sparse("imgs/huge.jpg"))),
    Case("image-1x5000", (*VALIDATE, "--images", "{tmp}/imgs"), 2, "1x5000 pixels",
         in_tmp(tall_png)),
    Case("onnx-of-a-terabyte", ("build-engine", "--onnx", "{tmp}/model.onnx"), 2,
         "no ONNX file passes protobuf's 2 GiB", in_tmp(sparse("model.onnx"))),
    Case("validate-graph-of-a-terabyte", ("validate", COPY, "--runtimes", "onnxruntime"), 2,
         "no ONNX file passes protobuf's 2 GiB", copy_export(sparse("model.onnx"))),
    Case("labels-of-a-terabyte", ("accuracy", "{export}", "--dataset", "{tmp}/imgs", "--labels",
                                  "{tmp}/list.txt"), 2, "past crossrt's limit",
         in_tmp(photos(), sparse("list.txt"))),
    # --- files crossrt must not trust, or cannot write
    Case("manifest-without-its-check", ("validate", COPY), 2, "no 'check'",
         copy_export(edit_manifest(lambda m: m.pop("check")))),
    Case("manifest-file-without-size", EXPORT_B0, 2, "no 'model.onnx.bytes'",
         copy_export(edit_manifest(lambda m: m["files"]["model.onnx"].pop("bytes")))),
    Case("journal-row-without-top5", ("accuracy", "{export}", "--dataset", "{tmp}/imgs",
                                      "--labels", "{tmp}/list.txt", *ACCURACY_ORT,
                                      "--predictions", "{tmp}/p.jsonl", "--resume"), 2,
         "is not a prediction of this run", journal_with({"index": 1, "path": "x", "label": 0})),
    Case("journal-of-another-run", ("accuracy", "{export}", "--dataset", "{tmp}/imgs",
                                    "--labels", "{tmp}/list.txt", *ACCURACY_ORT, "--limit", "2",
                                    "--predictions", "{tmp}/p.jsonl", "--resume"), 2,
         "written for another run", journal_with({})),
    Case("bench-record-without-latency", ("bench", B0, "--results", "b", "--resume",
                                          *QUICK_BENCH), 2, "no 'latency_ms'",
         bench_record_without("latency_ms"), chdir=True),
    Case("bench-resume-measured-otherwise", ("bench", B0, "--results", "b", "--resume",
                                             *QUICK_BENCH[:-4], "--warmup-ms", "3",
                                             *QUICK_BENCH[-2:]), 2,
         "measured another way (method:", bench_results, chdir=True),
    Case("load-outputs-of-another-model", (*VALIDATE, "--load-outputs", "{tmp}/other.json"), 2,
         "holds outputs of EfficientNetB0_small", saved_outputs_of(SMALL)),
    Case("labels-not-utf8", ("accuracy", "{export}", "--dataset", "{tmp}/imgs", "--labels",
                             "{tmp}/list.txt"), 2, "is not UTF-8 text",
         in_tmp(photos(label_file="list.txt"), write("list.txt", b"caf\xe9.jpg 1\n"))),
    Case("accuracy-dataset-missing-before-export", ("accuracy", SMALL, "--dataset",
                                                    "{tmp}/missing"), 2,
         "dataset folder", None, chdir=True),
    Case("a-results-file-is-a-folder", ("bench", SMALL, "--results", "{tmp}"), 2,
         "is a folder", in_tmp(lambda f: (f / "bench.json").mkdir())),
    Case("a-journal-partial-is-a-folder", ("accuracy", "{export}", "--dataset", "{tmp}/imgs",
                                           "--predictions", "{tmp}/p.jsonl"), 2, "is a folder",
         in_tmp(photos("imgs/c"), lambda f: (f / "p.jsonl.partial").mkdir())),
    Case("engine-below-a-file", (*ENGINE, "--saveEngine", "{tmp}/f.txt/e.plan"), 2,
         "is a file, not a folder", copy_export(write("../f.txt", "mine"))),
    Case("journal-name-too-long", ("accuracy", "{export}", "--dataset", "{tmp}/imgs",
                                   "--predictions", "{tmp}/" + "p" * 250), 2,
         "is too long a name", in_tmp(photos("imgs/c"))),
    Case("engine-name-too-long-for-its-sidecar", (*ENGINE, "--saveEngine", "{tmp}/" + "e" * 252),
         2, "is too long a name", copy_export()),
    # --- real processes: closed and full streams, a small disk, HOME not writable
    Case("stdout-closed", ("runtimes",), 141, "", process=True, stdout="closed"),
    Case("stdout-full", ("zoo",), 2, "cannot write to standard output: No space left",
         process=True, stdout="full"),
    Case("disk-full-mid-accuracy", ("accuracy", "{export}", "--dataset", "{tmp}/imgs",
                                    "--labels", "{tmp}/list.txt", *ACCURACY_ORT, "--batch-size",
                                    "1", "--predictions", "{tmp}/disk/p.jsonl"), 2, "disk full",
         lambda tmp, export: (tiny_disk(4096)(tmp, export),  # one page: 40-odd rows fit
                              photos(count=60, label_file="list.txt")(tmp)), process=True),
    Case("disk-full-at-the-journal-header", ("accuracy", "{export}", "--dataset", "{tmp}/imgs",
                                             "--labels", "{tmp}/list.txt", *ACCURACY_ORT,
                                             "--predictions", "{tmp}/disk/p.jsonl"), 2,
         "disk full", lambda tmp, export: (tiny_disk(0)(tmp, export),
                                           photos(label_file="list.txt")(tmp)), process=True),
    Case("disk-full-during-fp16-conversion", ("build-engine", "--onnx", "{tmp}/disk/model.onnx",
                                              "--fp16", "--saveEngine", "{tmp}/e"), 2, "free",
         tiny_disk(1 << 20, copy="model.onnx"), process=True),
    Case("home-read-only", ("export-onnx", SMALL, "--out", "{tmp}/o"), 2,
         "set HOME to a writable folder", tiny_disk(0, read_only=True), process=True,
         env=(("HOME", "{tmp}/disk"), ("XDG_CACHE_HOME", "{tmp}/disk/.cache"))),
]
CASES += [dataclasses.replace(case, process=True) for case in ROUND_3]  # each a real process


def class_folders(*names: str) -> Callable[[Path], None]:
    def edit(folder: Path) -> None:
        for name in names:
            photos(f"classes/{name}", count=1)(folder)
    return edit


BARE = ("validate", f"{COPY}/model.onnx")  # a graph given as a file (its export beside it)
ROUND_4 = [  # bring your own model: bare files, inference.yml models, official weights
    Case("bare-file-at-fp16", (*BARE, "--fp16"), 2, "runs as it is", copy_export()),
    Case("bare-file-as-another-runtime", (*BARE, "--runtimes", "paddle"), 2,
         "runtime paddle does not run model.onnx", copy_export()),
    Case("inputs-not-polygraphy", (*BARE, "--load-inputs", "{tmp}/notes.txt", "--compare",
                                   f"{COPY}/model.fp16.onnx"), 2,
         "is not Polygraphy inputs", copy_export(write("../notes.txt", "mine"))),
    Case("inputs-and-images", (*BARE, "--load-inputs", "{tmp}/notes.txt", "--images",
                               "{tmp}/imgs"), 2, "--load-inputs and --images both",
         lambda tmp, export: (copy_export(write("../notes.txt", "x"))(tmp, export),
                              photos()(tmp))),
    Case("compare-a-text-file", (*BARE, "--compare", "{tmp}/notes.txt"), 2,
         "not an .onnx file or an engine plan", copy_export(write("../notes.txt", "mine"))),
    Case("compare-a-missing-file", (*BARE, "--compare", "{tmp}/nowhere.onnx"), 2,
         "does not exist", copy_export()),
    Case("shapes-malformed", (*BARE, "--shapes", "x:224"), 2, "expected NAME:NxCxHxW",
         copy_export()),
    Case("shapes-of-an-export", (*VALIDATE, "--shapes", "x:1x3x224x224"), 2, "knows its own"),
    Case("spec-unknown", (*BARE, "--spec", "EfficientNetB9"), 2, "unknown model",
         copy_export()),
    Case("save-outputs-inputs-over-a-user-file", (*VALIDATE, "--save-outputs", "{tmp}/o.json"),
         2, "is not a saved-inputs file crossrt wrote", in_tmp(write("o.inputs.json", "mine"))),
    Case("accuracy-of-a-file-fed-nothing-known", ("accuracy", "{tmp}/t.onnx", "--dataset",
                                                  "{tmp}/imgs"), 2,
         "preprocessing is unknown", in_tmp(tiny_onnx("t.onnx"), photos())),
    Case("class-folders-naming-no-class", ("accuracy", "{export}", "--dataset",
                                           "{tmp}/classes"), 2,
         "class folder 'puppies' names no class", in_tmp(class_folders("tench", "puppies"))),
    Case("pretrained-offline", ("export-onnx", SMALL, "--pretrained", "--out", "{tmp}/o"), 2,
         "cannot download http://127.0.0.1:9/EfficientNetB0_small_pretrained.pdparams",
         env=((MIRROR_ENV, "http://127.0.0.1:9"), ("CROSSRT_HOME", "{tmp}/home"))),
    Case("pretrained-for-an-inference-model", ("export-onnx", "{tmp}/m", "--pretrained"), 2,
         "is a Paddle inference model already", in_tmp(write("m/inference.yml", "{}"))),
    Case("inference-yml-not-yaml", ("export-onnx", "{tmp}/m"), 2, "is not YAML",
         lambda tmp, export: (shutil.copytree(export / "paddle", tmp / "m"),
                              write("m/inference.yml", "a: [b")(tmp))),
    Case("inference-yml-without-preprocessing", ("export-onnx", "{tmp}/m"), 2,
         "no PreProcess.transform_ops",
         lambda tmp, export: (shutil.copytree(export / "paddle", tmp / "m"),
                              write("m/inference.yml", "PostProcess: {}")(tmp))),
]
TRITON = ("triton", "{export}", "--out", "{tmp}/r")
if importlib.util.find_spec("tritonclient") is not None:  # crossrt[serve]
    ROUND_4 += [
        Case("triton-preferred-above-the-max", (*TRITON, "--max-batch-size", "4",
                                                "--dynamic-batching", "--preferred-batch-sizes",
                                                "8"), 2, "is outside 1 to --max-batch-size 4"),
        Case("triton-no-instances", (*TRITON, "--instances", "0"), 2, "give 1 to 64"),
        Case("triton-over-a-user-folder", ("triton", "{export}", "--out", "{tmp}/mine"), 2,
             "is not a Triton repository crossrt wrote", user_folder),
        Case("triton-into-the-export", ("triton", COPY, "--out", COPY), 2,
             "holds the export it is made from", copy_export()),
        Case("triton-of-a-bare-file", ("triton", f"{COPY}/model.onnx", "--out", "{tmp}/r"), 2,
             "crossrt triton serves an export", copy_export()),
        Case("triton-engine-without-sidecar", (*TRITON, "--engine", "{tmp}/e.plan"), 2,
             "has no sidecar saying its profile", in_tmp(write("e.plan", "not a plan"))),
    ]
CASES += [dataclasses.replace(case, process=True) for case in ROUND_4]


# --- the checks ----------------------------------------------------------------------------

def snapshot(*folders: Path) -> dict[Path, str | None]:
    """Every path under ``folders``: a file's sha256 (a huge sparse one's size and mtime), None
    for a folder."""
    def digest(path: Path) -> str | None:
        if not path.is_file():
            return None
        if path.stat().st_size > 1 << 28:
            return f"{path.stat().st_size}:{path.stat().st_mtime_ns}"
        return hashlib.sha256(path.read_bytes()).hexdigest()

    return {path: digest(path) for folder in folders if folder.is_dir()
            for path in folder.rglob("*")}


LEFTOVERS = (".lock", ".tmp", ".partial", ".shapes")  # what no refused command may leave


NOTICE = re.compile(r"^crossrt: (?!error: )")  # notices and progress lines


def check_outcome(case_id: str, code: int, stderr: str, expected_code: int, fragment: str,
                  before: dict[Path, str | None], folders: tuple[Path, ...]) -> None:
    assert "Traceback" not in stderr, f"{case_id}: {stderr}"
    errors = [line for line in stderr.splitlines() if line.strip() and not NOTICE.match(line)]
    assert len(errors) == (1 if fragment else 0), f"{case_id}: {stderr}"
    assert not fragment or fragment in errors[0], f"{case_id}: {errors[0]}"
    assert code == expected_code, f"{case_id}: exit {code}, {errors}"
    after = snapshot(*folders)
    lost = [str(p) for p, digest in before.items() if p not in after or after[p] != digest]
    assert not lost, f"{case_id}: lost or changed {lost}"
    left = [str(p) for p in after if p not in before
            and (".crossrt-staging-" in p.name or p.name.endswith(LEFTOVERS))]
    assert not left, f"{case_id}: left behind {left}"


def run_main(argv: list[str], capfd: pytest.CaptureFixture[str]) -> tuple[int, str]:
    previous = signal.getsignal(signal.SIGTERM)
    try:
        code = crossrt.main(argv)
    except SystemExit as done:  # argparse
        code = done.code if isinstance(done.code, int) else 2
    finally:
        signal.signal(signal.SIGTERM, previous)
    return code, capfd.readouterr().err


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case, b0_export, tmp_path, monkeypatch, capfd):
    export = b0_export.path
    try:
        if case.setup is not None:
            case.setup(tmp_path, export)
        cwd = tmp_path / ("mine" if (tmp_path / "mine").is_dir() else "")
        if case.chdir and not case.process:
            monkeypatch.chdir(cwd)
        folders = (tmp_path, export)
        before = snapshot(*folders)
        argv = [arg.format(tmp=tmp_path, export=export) for arg in case.argv]
        capfd.readouterr()  # the setup's own output is not the command's
        code, stderr = (run_process(argv, case, cwd if case.chdir else ROOT, tmp_path)
                        if case.process else run_main(argv, capfd))
        check_outcome(case.id, code, stderr, case.code, case.fragment, before, folders)
    finally:
        unmount_under(tmp_path)


def run_process(argv: list[str], case: Case, cwd: Path, tmp: Path) -> tuple[int, str]:
    """``python -m crossrt`` for real: its exit code and stderr (stdout as the case says)."""
    env = {**ENV, **{key: value.format(tmp=tmp) for key, value in case.env}}
    command = [sys.executable, "-m", "crossrt", *argv]
    if case.stdout == "closed":  # the reader is gone before the first line is written
        read, write = os.pipe()
        os.close(read)
        with os.fdopen(write, "wb") as closed:
            done = subprocess.run(command, stdout=closed, stderr=subprocess.PIPE, text=True,
                                  env=env, cwd=cwd, timeout=300)
    else:
        with open(os.devnull if case.stdout == "pipe" else "/dev/full", "wb") as sink:
            done = subprocess.run(command, stdout=sink, stderr=subprocess.PIPE, text=True,
                                  env=env, cwd=cwd, timeout=300)
    return done.returncode, done.stderr


def unmount_under(folder: Path) -> None:
    """Take down the small disks a case mounted (tiny_disk)."""
    for line in Path("/proc/mounts").read_text().splitlines():
        point = line.split()[1]
        if point.startswith(str(folder)):
            subprocess.run(["umount", "-l", point], check=False)


# --- real processes: signals, the lock, the process's exit code ------------------------------

def crossrt_process(*argv: str, cwd: Path | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "crossrt", *argv], cwd=cwd or ROOT, env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(stream: io.TextIOBase, words: str, seen: list[str], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    for line in stream:
        seen.append(line)
        if words in line or time.monotonic() > deadline:
            return


@pytest.mark.slow  # exports
def test_sigterm_during_an_export_cleans_up_like_ctrl_c(tmp_path):
    (tmp_path / "keep.txt").write_text("mine")
    before = snapshot(tmp_path)
    process = crossrt_process("export-onnx", SMALL, "--out", str(tmp_path / "out"))
    seen: list[str] = []
    wait_for(process.stderr, "building the Paddle inference program", seen)
    time.sleep(1.0)  # inside paddle now
    process.send_signal(signal.SIGTERM)
    _, rest = process.communicate(timeout=60)
    check_outcome("sigterm", process.returncode, "".join(seen) + rest, 143, "terminated",
                  before, (tmp_path,))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]


def test_sigterm_while_paddle_runs_in_validate_exits_143_without_its_stack(b0_export, tmp_path):
    """Paddle installs its own SIGTERM handler (it prints a C++ stack); crossrt's must stay."""
    process = crossrt_process("validate", str(b0_export.path), "--random", "400",
                              "--batch-sizes", "1", "--json", str(tmp_path / "report.json"))
    seen: list[str] = []
    wait_for(process.stderr, "running paddle", seen)  # Paddle imported and loaded
    time.sleep(1.0)
    process.send_signal(signal.SIGTERM)
    _, rest = process.communicate(timeout=60)
    check_outcome("sigterm-validate", process.returncode, "".join(seen) + rest, 143,
                  "terminated", {}, ())
    assert not (tmp_path / "report.json").exists()


def test_a_waiting_export_says_who_holds_the_lock(b0_export, tmp_path):
    copy = Path(shutil.copytree(b0_export.path, tmp_path / "copy"))
    before = snapshot(tmp_path)
    seen: list[str] = []
    with ExportDir(copy).locked():
        process = crossrt_process("export-onnx", B0, "--fp16", "--out", str(copy))
        wait_for(process.stderr, "waiting for", seen)
    stdout, rest = process.communicate(timeout=120)
    assert process.returncode == 0, "".join(seen) + rest
    assert f"another export holds its lock (pid {os.getpid()} on" in "".join(seen)
    assert "(reused)" in stdout
    assert snapshot(tmp_path) == before and not (tmp_path / ".copy.lock").exists()


def test_paddle2onnx_exiting_is_one_line_and_a_failure(monkeypatch, tmp_path, b0_export, capfd):
    """paddle2onnx may call exit() on a program Paddle accepted: that is our one-line error."""
    import paddle2onnx

    def exits(*args, **kwargs):
        os.write(2, b"[ERROR] Paddle2ONNX cannot parse this program\n")  # its C++ log
        raise SystemExit(255)

    monkeypatch.setattr(paddle2onnx, "export", exits)
    code, stderr = run_main(["export-onnx", B0, "--paddle-model", str(b0_export.path),
                             "--out", str(tmp_path / "o")], capfd)
    check_outcome("paddle2onnx-exit", code, stderr, 1, "paddle2onnx could not convert", {},
                  (tmp_path,))
    assert "cannot parse this program" in stderr and not (tmp_path / "o").exists()


def test_out_of_memory_is_a_runtime_fault(monkeypatch, b0_export, capfd):
    from validation import validate as validate_mod

    def too_big(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(validate_mod, "_run", too_big)
    code, stderr = run_main(["validate", str(b0_export.path), "--runtimes", "onnxruntime"], capfd)
    check_outcome("oom", code, stderr, 3, "out of memory", {}, ())


def test_golden_zip_errors_are_named(tmp_path):
    """The golden loader's own boundary: BadZipFile, EOFError and friends are one UsageError."""
    from core.errors import UsageError
    from validation.results import load_golden

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("inputs.npy", b"\x93NUMPY garbage")
    path = tmp_path / "reference.npz"
    for data in (b"", b"PK\x03\x04" + b"\0" * 40, buffer.getvalue()):
        path.write_bytes(data)
        with pytest.raises(UsageError, match="cannot read golden outputs"):
            load_golden(path)


def test_onnx_runtime_refusing_a_valid_graph_is_a_runtime_fault(monkeypatch, b0_export, capfd):
    """exit 3, not 2: the graph is good (onnx's checker accepts it), the runtime is not."""
    import onnxruntime as ort

    def refuses(*args, **kwargs):
        raise RuntimeError("[ONNXRuntimeError] : 1 : FAIL : kernel registration failed")

    monkeypatch.setattr(ort, "InferenceSession", refuses)
    code, stderr = run_main(["validate", str(b0_export.path), "--runtimes", "onnxruntime",
                             "--reference", "paddle"], capfd)
    check_outcome("ort-refuses", code, stderr, 3, "a valid ONNX graph: [ONNXRuntimeError]", {},
                  ())


def test_onnx_runtime_failing_during_a_run_is_a_runtime_fault(b0_export):
    import runtimes
    from core.errors import RuntimeFault
    from runtimes.onnxrt import OnnxRuntimeRunner

    with runtimes.create_runner("onnxruntime", b0_export.path) as runner:
        assert isinstance(runner, OnnxRuntimeRunner)

        session = runner._session

        class Failing:
            def __getattr__(self, name):
                return getattr(session, name)

            def run_with_iobinding(self, *args):
                raise RuntimeError("CUDA graph capture failed")

        runner._session = Failing()
        runner.bind({"x": np.zeros((1, 3, 224, 224), np.float32)})
        with pytest.raises(RuntimeFault, match="CUDA graph capture failed"):
            runner.run_bound()


def test_a_file_that_is_not_onnx_is_bad_input_for_a_runner(tmp_path):
    import runtimes
    from core.errors import UsageError

    (tmp_path / "model.onnx").write_bytes(b"\x08\x07 not a graph")
    with pytest.raises(UsageError, match="ONNX Runtime cannot load"), \
            runtimes.create_runner("onnxruntime", tmp_path):
        pass


def test_validate_by_name_uses_the_export_there_and_replaces_nothing(b0_export, tmp_path,
                                                                      monkeypatch, capfd):
    """artifacts/MODEL made from a checkpoint is validated as it is, never re-exported."""
    folder = tmp_path / "artifacts" / B0
    shutil.copytree(b0_export.path, folder)
    edit_manifest(lambda m: m["request"].update(weights={"kind": "checkpoint",
                                                         "sha256": "ab" * 32}))(folder)
    before = snapshot(tmp_path)
    monkeypatch.chdir(tmp_path)
    code, stderr = run_main(["validate", B0, "--runtimes", "onnxruntime", "--batch-sizes", "4"],
                            capfd)
    assert code == 0 and "Traceback" not in stderr, stderr
    assert "exporting" not in stderr and "building the Paddle" not in stderr
    assert snapshot(tmp_path) == before


def test_a_program_paddle_cannot_read_back_is_named(monkeypatch, tmp_path, b0_export, capfd):
    """What a disk that fills while Paddle writes its program looks like: exit 1, nothing left."""
    from exporter import export as export_mod

    def saved(folder, spec, *args):  # the zoo program, as jit.save would write it (quickly)
        shutil.copytree(b0_export.path / "paddle", folder)
        return export_mod._Source(folder / "inference.json", folder / "inference.pdiparams", {})

    def unreadable(*args, **kwargs):
        raise RuntimeError("(Unavailable) Cannot read tensor desc size")

    monkeypatch.setattr(export_mod, "_paddle_program", saved)
    monkeypatch.setattr(export_mod, "paddle_inference_outputs", unreadable)
    code, stderr = run_main(["export-onnx", B0, "--out", str(tmp_path / "o")], capfd)
    check_outcome("unreadable-program", code, stderr, 1, "check the free space", {}, (tmp_path,))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("signum", "code", "word"), [(signal.SIGTERM, 143, "terminated"),
                                                      (signal.SIGINT, 130, "interrupted")])
def test_a_signal_during_an_engine_build_stops_it_and_leaves_no_plan(b0_export, tmp_path,
                                                                      signum, code, word):
    """TensorRT swallows what its callbacks raise: the signal is kept and the build cancelled
    at its next step, then crossrt exits as for any interrupt, with no plan, sidecar or temp."""
    pytest.importorskip("tensorrt_rtx", reason="TensorRT-RTX builds the engine")
    before = snapshot(tmp_path)
    process = crossrt_process("build-engine", "--onnx", str(b0_export.path / "model.onnx"),
                              "--fp16", "--saveEngine", str(tmp_path / "b0.engine"))
    seen: list[str] = []
    wait_for(process.stderr, "building b0.engine", seen)
    process.send_signal(signum)
    _, rest = process.communicate(timeout=120)
    stderr = "".join(seen) + rest
    check_outcome(f"{word}-build", process.returncode, stderr, code, word, before, (tmp_path,))
    assert "Exception caught" not in stderr and sorted(tmp_path.iterdir()) == []


def test_a_second_bench_into_the_same_results_waits_for_the_first(b0_export, tmp_path):
    """Results folders are locked like exports: two sweeps never write one bench.json."""
    from core import files

    shutil.copytree(b0_export.path, tmp_path / "artifacts" / B0)
    seen: list[str] = []
    with files.locked(tmp_path / "b", "bench"):
        process = crossrt_process("bench", B0, "--results", "b", "--resume", *QUICK_BENCH,
                                  cwd=tmp_path)
        wait_for(process.stderr, "waiting for", seen)
    _, rest = process.communicate(timeout=120)
    assert process.returncode == 0, "".join(seen) + rest
    assert f"another bench holds its lock (pid {os.getpid()} on" in "".join(seen)
    assert json.loads((tmp_path / "b" / "bench.json").read_text())["records"]
    assert not (tmp_path / ".b.lock").exists()


@pytest.mark.parametrize("argv", [
    ("validate", "{export}", "--runtimes", "onnxruntime", "--json"),
    ("accuracy", "{export}", "--dataset", "{tmp}/imgs", "--labels", "{tmp}/list.txt",
     *ACCURACY_ORT, "--json"),
    ("bench", B0, "--results", "{tmp}/b", *QUICK_BENCH, "--json"),
    ("zoo", "--json"), ("runtimes", "--json")], ids=lambda argv: argv[0])
def test_json_alone_is_all_that_goes_to_stdout(b0_export, tmp_path, argv, monkeypatch, capsys):
    photos(count=4, label_file="list.txt")(tmp_path)
    shutil.copytree(b0_export.path, tmp_path / "artifacts" / B0)
    monkeypatch.chdir(tmp_path)
    assert crossrt.main([a.format(export=b0_export.path, tmp=tmp_path) for a in argv]) == 0
    out = capsys.readouterr().out
    json.loads(out)  # the whole of stdout is one JSON document


def test_a_legal_long_name_is_written_with_shortened_helper_names(tmp_path, capsys):
    """A 250-byte name is legal; crossrt's temporary file, lock and staging names derived from
    it are shortened (hashed) instead of failing."""
    from core import files
    from core.layout import ExportDir

    target = tmp_path / ("z" * 250)
    assert crossrt.main(["zoo", "--json", str(target)]) == 0
    assert json.loads(target.read_text()) and sorted(tmp_path.iterdir()) == [target]
    with files.locked(tmp_path / ("b" * 252), "bench"):
        (lock,) = [p for p in tmp_path.iterdir() if p.name.endswith(".lock")]
        assert len(lock.name) == 255
    with ExportDir(tmp_path / ("e" * 250)).staging() as stage:
        assert len(stage.name) <= 255 and stage.is_dir()


def test_force_replaces_a_file_crossrt_did_not_write(tmp_path, capsys):
    mine = tmp_path / "notes.json"
    mine.write_text("mine")
    assert crossrt.main(["zoo", "--json", str(mine)]) == 2
    assert mine.read_text() == "mine"
    assert crossrt.main(["zoo", "--json", str(mine), "--force"]) == 0
    assert json.loads(mine.read_text())[0]["name"]
    assert crossrt.main(["zoo", "--json", str(mine)]) == 0  # now crossrt's own: replaced


def test_what_a_killed_write_left_does_not_stop_export_force(b0_export, tmp_path):
    """A build-engine or FP16 conversion killed mid-write leaves a temporary file or folder:
    it is crossrt's own, so --force may replace the export holding it."""
    from core.files import temp_prefix

    copy = Path(shutil.copytree(b0_export.path, tmp_path / "copy"))
    (copy / f"{temp_prefix('model.fp16.engine')}k1ll3d0x.tmp").write_bytes(b"vtrt")
    (copy / f"{temp_prefix('model.fp16.onnx')}abc_1234").mkdir()
    (copy / f"{temp_prefix('model.fp16.onnx')}abc_1234" / "model.fp16.onnx").write_bytes(b"x")
    (copy / ".model.onnx.notours.tmp").write_bytes(b"x")  # not a name crossrt makes
    export = ExportDir(copy)
    assert export.foreign_entries(export.manifest()) == [".model.onnx.notours.tmp"]


def test_undecodable_file_names_are_printed_not_fatal(b0_export, tmp_path):
    """A file name that is not UTF-8 (as Linux allows) passes through reports with escapes."""
    photos("imgs", count=1)(tmp_path)
    os.rename(tmp_path / "imgs" / "000.jpg", os.fsencode(tmp_path / "imgs") + b"/\xff\xfe.jpg")
    done = subprocess.run([sys.executable, "-m", "crossrt", "validate", str(b0_export.path),
                           "--images", str(tmp_path / "imgs"), "--runtimes", "onnxruntime",
                           "--markdown", str(tmp_path / "r.md")], env=ENV, cwd=ROOT,
                          capture_output=True, timeout=300)
    assert done.returncode == 0 and b"Traceback" not in done.stderr, done.stderr[-2000:]
    assert "\\udcff\\udcfe.jpg" in (tmp_path / "r.md").read_text()  # escaped, not fatal


def test_other_libraries_say_nothing_on_stderr(monkeypatch, capfd):
    """stderr holds crossrt's lines only: a library's log record or warning is not shown."""
    import logging
    import warnings

    from exporter import counting

    real = counting.zoo_table

    def chatty() -> list:
        logging.getLogger("matplotlib").warning("Matplotlib is building the font cache")
        warnings.warn("something is deprecated", DeprecationWarning, stacklevel=1)
        return real()

    monkeypatch.setattr(counting, "zoo_table", chatty)
    assert crossrt.main(["zoo"]) == 0
    assert capfd.readouterr().err == ""
