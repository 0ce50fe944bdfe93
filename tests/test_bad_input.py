"""Bad and hostile input, case by case: one line on stderr, the right exit code, nothing lost.

Every case runs the real CLI (``crossrt.main`` in this process, or ``python -m crossrt`` where
signals, locks and process exit codes are the point) on a scratch folder and on copies of the
session's EfficientNetB0 export. Each asserts the exit code, that stderr holds exactly one
line that is not a ``crossrt:`` notice, with the expected words and no traceback, and that
every file that was there before is still there, byte for byte, with no staging folder or
lock file left behind. Exit codes: 1 a check ran and failed, 2 bad input, 3 a runtime fault.
"""

from __future__ import annotations

import hashlib
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

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}

Setup = Callable[[Path, Path], None]  # (scratch folder, the shared export) -> None


@dataclass(frozen=True)
class Case:
    id: str
    argv: tuple[str, ...]  # {tmp} is the scratch folder, {export} the shared B0 export
    code: int
    fragment: str
    setup: Setup | None = None
    chdir: bool = False  # run with the scratch folder as the current folder


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


# --- the checks ----------------------------------------------------------------------------

def snapshot(*folders: Path) -> dict[Path, str | None]:
    """Every path under ``folders``: a file's sha256, None for a folder."""
    return {path: hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None
            for folder in folders if folder.is_dir() for path in folder.rglob("*")}


NOTICE = re.compile(r"^crossrt: (?!error: )")  # notices and progress lines


def check_outcome(case_id: str, code: int, stderr: str, expected_code: int, fragment: str,
                  before: dict[Path, str | None], folders: tuple[Path, ...]) -> None:
    assert "Traceback" not in stderr, f"{case_id}: {stderr}"
    errors = [line for line in stderr.splitlines() if line.strip() and not NOTICE.match(line)]
    assert len(errors) == 1, f"{case_id}: {stderr}"
    assert fragment in errors[0], f"{case_id}: {errors[0]}"
    assert code == expected_code, f"{case_id}: exit {code}, {errors[0]}"
    after = snapshot(*folders)
    lost = [str(p) for p, digest in before.items() if p not in after or after[p] != digest]
    assert not lost, f"{case_id}: lost or changed {lost}"
    left = [str(p) for p in after if p not in before
            and (".crossrt-staging-" in p.name or p.name.endswith(".lock"))]
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
    if case.setup is not None:
        case.setup(tmp_path, export)
    if case.chdir:
        monkeypatch.chdir(tmp_path / ("mine" if (tmp_path / "mine").is_dir() else ""))
    folders = (tmp_path, export)
    before = snapshot(*folders)
    argv = [arg.format(tmp=tmp_path, export=export) for arg in case.argv]
    capfd.readouterr()  # the setup's own output is not the command's
    code, stderr = run_main(argv, capfd)
    check_outcome(case.id, code, stderr, case.code, case.fragment, before, folders)


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
