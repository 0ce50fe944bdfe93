"""Runner conformance over every runtime available here, plus cross-runtime checks.

Every available runner gets the same checks (metadata, batch 1/4/8, the fast path, bad
feeds); unavailable ones show up as skips with the reason. The model is a real export
(``EXPORT_FIXTURE``): switching to another export fixture is a one-line change.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from rt_fixtures import build_small_export, write_tiny_onnx

import runtimes
from core.errors import DependencyError, UsageError
from core.spec import BATCH_SIZES
from runtimes.trtexec import onnx_inputs

EXPORT_FIXTURE = "rt_small_export"  # the fixture giving the export directory under test
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def rt_small_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The small Paddle model exported like export-onnx; ONNX-only where paddle is missing."""
    root = tmp_path_factory.getbasetemp() / "rt"
    if runtimes.is_available("paddle")[0]:
        return build_small_export(root)
    return write_tiny_onnx(root / "tiny" / "model.onnx").parent


@pytest.fixture(scope="session")
def export_dir(request: pytest.FixtureRequest) -> Path:
    return request.getfixturevalue(EXPORT_FIXTURE)


def _onnx_input(export: Path) -> tuple[str, tuple[int | None, ...]]:
    (name, dims), = onnx_inputs(export / "model.onnx").items()  # the models have one input
    return name, dims


def _batch(export: Path, batch: int, seed: int = 0) -> dict[str, np.ndarray]:
    name, dims = _onnx_input(export)
    shape = (batch, *dims[1:])
    return {name: np.random.default_rng(seed).standard_normal(shape).astype(np.float32)}


@pytest.fixture(scope="module", params=runtimes.RUNNER_KINDS)
def runner(request: pytest.FixtureRequest, export_dir: Path):
    kind = request.param
    available, reason = runtimes.is_available(kind)
    if not available:
        pytest.skip(f"{kind}: {reason}")
    with runtimes.create_runner(kind, export_dir) as active:  # tensorrt builds the engine
        yield active


# -- conformance: the same checks for every runner ---------------------------------------------
def test_metadata_matches_the_graph(runner, export_dir):
    name, dims = _onnx_input(export_dir)
    meta = runner.get_input_metadata()
    assert list(meta) == [name]
    assert meta[name].dtype == np.float32
    assert tuple(meta[name].shape) == dims  # dynamic batch reported as None
    assert meta[name].shape[0] is None
    from polygraphy.datatype import DataType

    assert runner.get_input_metadata(use_numpy_dtypes=False)[name].dtype == DataType.FLOAT32


@pytest.mark.parametrize("batch", BATCH_SIZES)
def test_infer_gives_one_row_per_sample(runner, export_dir, batch):
    feed = _batch(export_dir, batch, seed=batch)
    outputs = runner.infer(feed)
    (logits,) = outputs.values()
    assert logits.shape[0] == batch and logits.ndim == 2
    assert np.isfinite(logits).all()
    assert runner.last_inference_time() > 0
    # each sample is computed on its own: the first row does not depend on the batch around it
    alone = runner.infer({k: v[:1] for k, v in feed.items()})
    np.testing.assert_allclose(next(iter(alone.values()))[0], logits[0], rtol=1e-4, atol=1e-5)


def test_outputs_are_fresh_arrays(runner, export_dir):
    first = runner.infer(_batch(export_dir, 2, seed=1))
    kept = {k: v.copy() for k, v in first.items()}
    runner.infer(_batch(export_dir, 2, seed=2))
    for key in kept:
        np.testing.assert_array_equal(first[key], kept[key])  # not overwritten by the next call


def test_bound_path_matches_infer(runner, export_dir):
    feed = _batch(export_dir, 4, seed=3)
    expected = runner.infer(feed)
    runner.bind(feed)
    for _ in range(3):
        runner.run_bound()
    bound = runner.fetch_bound()
    assert sorted(bound) == sorted(expected)
    for key in expected:
        np.testing.assert_allclose(bound[key], expected[key], rtol=1e-5, atol=1e-6)
    feed[next(iter(feed))][:] = 0  # the caller's array may change after bind: it was copied
    runner.run_bound()
    for key in expected:
        np.testing.assert_allclose(runner.fetch_bound()[key], expected[key], rtol=1e-5, atol=1e-6)
    # a second shape gets its own binding; the first still gives its own result
    runner.bind(_batch(export_dir, 1, seed=4))
    runner.run_bound()
    assert next(iter(runner.fetch_bound().values())).shape[0] == 1


@pytest.mark.parametrize("fault", ["name", "dtype", "shape", "rank", "missing", "not-array"])
def test_bad_feed_names_input_expected_and_got(runner, export_dir, fault):
    (name, array), = _batch(export_dir, 2).items()
    feed, expected, got = {
        "name": ({"wrong": array}, name, "wrong"),
        "dtype": ({name: array.astype(np.float64)}, "float32", "float64"),
        "shape": ({name: array[:, :, 1:]}, "x".join(map(str, array.shape[2:])),
                  "x".join(map(str, array[:, :, 1:].shape))),
        "rank": ({name: array[0]}, "N", "x".join(map(str, array[0].shape))),
        "missing": ({}, name, "[]"),
        "not-array": ({name: array.tolist()}, "numpy array", "list"),
    }[fault]
    for call in (runner.infer, runner.bind):
        with pytest.raises(UsageError) as caught:
            call(feed)
        message = str(caught.value)
        assert name in message or fault == "name" and "wrong" in message
        assert expected in message and got in message
        assert "\n" not in message


def test_describe_is_json_provenance(runner):
    described = runner.describe()
    json.dumps(described)
    assert described["runtime"] == runner.kind
    assert described["versions"] and described["device"] and described["precision"]
    assert described["model"].endswith((".onnx", ".json", ".pdmodel", ".engine"))


def test_inactive_runner_refuses(export_dir):
    inactive = runtimes.create_runner("onnxruntime", export_dir)
    with pytest.raises(UsageError, match="not active"):
        inactive.infer(_batch(export_dir, 1))
    with pytest.raises(UsageError, match="bind"), inactive:
        inactive.run_bound()


def test_unknown_option_and_kind(export_dir):
    with pytest.raises(UsageError, match="unknown option 'thread'.*threads"):
        runtimes.create_runner("onnxruntime", export_dir, thread=2)
    with pytest.raises(UsageError, match="unknown runtime 'ort'.*onnxruntime"):
        runtimes.create_runner("ort", export_dir)


def test_onnxruntime_types_map_through_polygraphy(capfd):
    from runtimes.onnxrt import ort_dtype

    assert ort_dtype("tensor(float)") == np.float32 and ort_dtype("tensor(float16)") == np.float16
    assert ort_dtype("tensor(int64)") == np.int64 and ort_dtype("tensor(bool)") == np.bool_
    for unsupported in ("tensor(bfloat16)", "tensor(string)", "tensor(complex)"):
        with pytest.raises(UsageError, match=r"unsupported ONNX tensor type tensor\("):
            ort_dtype(unsupported)
    captured = capfd.readouterr()  # one error, no Polygraphy log lines beside it
    assert captured.err == "" and captured.out == ""


def test_cuda_runner_binding_logic_on_the_cpu(tmp_path):
    """The onnxruntime-cuda runner's I/O bindings (one per purpose and shape, each with its own
    CUDA-graph id), run on the CPU EP, where ONNX Runtime ignores the graph ids."""
    from runtimes.onnxrt import OnnxRuntimeCudaRunner

    class CudaLogicOnCpu(OnnxRuntimeCudaRunner):
        device = "cpu"

        def _providers(self):
            return ["CPUExecutionProvider"]

    rng = np.random.default_rng(5)
    x4 = rng.standard_normal((4, 3, 32, 32)).astype(np.float32)
    with runtimes.create_runner("onnxruntime", write_tiny_onnx(tmp_path / "a.onnx")) as plain:
        expected = plain.infer({"x": x4})["logits"]
    with CudaLogicOnCpu(tmp_path / "a.onnx") as runner:
        runner.bind({"x": x4[:1]})
        np.testing.assert_allclose(runner.infer({"x": x4})["logits"], expected, atol=1e-5)
        runner.run_bound()  # infer did not overwrite what bind put in place
        np.testing.assert_allclose(runner.fetch_bound()["logits"], expected[:1], atol=1e-5)
        np.testing.assert_allclose(runner.infer({"x": x4[2:3]})["logits"], expected[2:3], atol=1e-5)
        ids = sorted(int(slot.run_options.get_run_config_entry("gpu_graph_id"))
                     for slot in runner._slots.values())
        assert ids == [1, 2, 3]  # bound bs1, infer bs4, infer bs1: distinct graphs, never 0
        assert runner.describe()["cuda_graph"] == "on"
    # an output whose size is not known from the inputs: ORT allocates it, so no CUDA graph
    with CudaLogicOnCpu(write_tiny_onnx(tmp_path / "b.onnx", output_batch="n")) as runner:
        np.testing.assert_allclose(runner.infer({"x": x4})["logits"], expected, atol=1e-5)
        (slot,) = runner._slots.values()
        assert not slot.graph and slot.run_options.get_run_config_entry("gpu_graph_id") == "-1"


# -- across runtimes -------------------------------------------------------------------------------
needs_paddle = pytest.mark.skipif(not runtimes.is_available("paddle")[0],
                                  reason=runtimes.is_available("paddle")[1])


@needs_paddle
def test_paddle_inference_matches_onnxruntime(export_dir):
    feed = _batch(export_dir, 8, seed=11)
    with runtimes.create_runner("paddle", export_dir, threads=2) as paddle_runner:
        reference = paddle_runner.infer(feed)
    with runtimes.create_runner("onnxruntime", export_dir, threads=2) as ort_runner:
        outputs = ort_runner.infer(feed)
    assert sorted(outputs) == sorted(reference)  # Paddle's outputs carry the ONNX names
    for key, ref in reference.items():
        assert ref.std(axis=0).mean() > 1e-3  # outputs depend on the input: not a trivial match
        scale = max(1.0, float(np.abs(ref).max()))
        np.testing.assert_allclose(outputs[key], ref, rtol=0, atol=1e-4 * scale)


@needs_paddle
def test_paddle_runner_switches(export_dir):
    feed = _batch(export_dir, 4, seed=12)
    with runtimes.create_runner("paddle", export_dir, onednn=False, threads=1) as plain:
        plain_out = plain.infer(feed)
        assert plain.describe()["onednn"] is False
    with runtimes.create_runner("paddle", export_dir, onednn=True, threads=2) as fast:
        fast_out = fast.infer(feed)
        assert fast.describe()["threads"] == 2
    for key in plain_out:
        np.testing.assert_allclose(fast_out[key], plain_out[key], rtol=1e-4, atol=1e-5)
    with pytest.raises(UsageError, match="TensorRT subgraph"):
        runtimes.create_runner("paddle", export_dir, fp16=True)


@needs_paddle
def test_paddle_legacy_program(tmp_path_factory, export_dir):
    """A pre-PIR ``inference.pdmodel`` runs too, and gives the PIR program's outputs."""
    if EXPORT_FIXTURE != "rt_small_export":
        pytest.skip("the legacy program is a copy of the small test model only")
    legacy = build_small_export(tmp_path_factory.getbasetemp() / "rt", legacy=True)
    feed = _batch(export_dir, 4, seed=13)
    with runtimes.create_runner("paddle", legacy / "paddle" / "inference") as old:
        assert old.path.suffix == ".pdmodel"
        assert tuple(old.get_input_metadata()["x"].shape) == (None, 3, 32, 32)
        old_out = next(iter(old.infer(feed).values()))
    with runtimes.create_runner("paddle", export_dir) as new:
        new_out = next(iter(new.infer(feed).values()))
    np.testing.assert_allclose(old_out, new_out, rtol=1e-5, atol=1e-6)


@needs_paddle
def test_polygraphy_comparator_runs_and_saves_our_runners(export_dir, tmp_path):
    from polygraphy import comparator
    from polygraphy.comparator import Comparator, RunResults

    simple = getattr(comparator, "SimpleCompareFunc", None) or comparator.CompareFunc.simple

    feeds = [_batch(export_dir, 4, seed=21), _batch(export_dir, 1, seed=22)]
    runners = [runtimes.create_runner("paddle", export_dir),
               runtimes.create_runner("onnxruntime", export_dir)]
    results = Comparator.run(runners, data_loader=feeds)
    assert [name for name, _ in results] == ["paddle", "onnxruntime"]
    assert bool(Comparator.compare_accuracy(results, compare_func=simple(atol=1e-4)))
    path = tmp_path / "outputs.json"
    results.save(str(path))
    loaded = RunResults.load(str(path))
    with runtimes.create_runner("onnxruntime", export_dir) as ort_runner:
        for (name, iterations), (loaded_name, loaded_iterations) in zip(results, loaded):
            assert name == loaded_name and len(loaded_iterations) == len(feeds)
            for feed, saved, again in zip(feeds, iterations, loaded_iterations):
                for key in saved:
                    np.testing.assert_array_equal(saved[key], again[key])
                    np.testing.assert_allclose(again[key], ort_runner.infer(feed)[key], atol=1e-4)


# -- availability --------------------------------------------------------------------------------
def test_unavailable_runner_is_a_one_line_dependency_error(export_dir):
    missing = [k for k in runtimes.RUNNER_KINDS if not runtimes.is_available(k)[0]]
    if not missing:
        pytest.skip("every runtime is available here")
    for kind in missing:
        with pytest.raises(DependencyError) as caught:
            runtimes.create_runner(kind, export_dir)
        assert caught.value.exit_code == 2 and "\n" not in str(caught.value)
        assert runtimes.is_available(kind)[1] in str(caught.value)


def _probe(code: str, tmp_path: Path, extra_path: Path | None = None,
           env: dict[str, str] | None = None) -> dict:
    """Run ``code`` (which prints JSON) in a fresh interpreter with a chosen sys.path/env."""
    import os

    paths = [str(p) for p in (extra_path, ROOT) if p]
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(paths), **(env or {})}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=environment, cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_tensorrt_stubs_are_not_tensorrt(tmp_path):
    """A ``tensorrt`` folder of .pyi files (tensorrt-stubs) imports, but is not TensorRT."""
    fake = tmp_path / "site" / "tensorrt"
    fake.mkdir(parents=True)
    (fake / "__init__.pyi").write_text("class Builder: ...\n__version__: str\n")
    result = _probe("import json, importlib.util, tensorrt, runtimes\n"
                    "from runtimes.trt_backends import TENSORRT\n"
                    "print(json.dumps([importlib.util.find_spec('tensorrt') is not None,"
                    " runtimes.is_available('tensorrt')[0], TENSORRT.installed_reason(),"
                    " TENSORRT.build_reason()]))", tmp_path, tmp_path / "site")
    found, available, reason, build_reason = result
    assert found and not available
    assert "stubs" in reason and "pip install" in reason and build_reason == reason


def test_gpu_build_without_gpu_says_no_gpu(tmp_path):
    """An onnxruntime with the CUDA provider library but no visible GPU: the GPU is the reason."""
    capi = tmp_path / "site" / "onnxruntime" / "capi"
    capi.mkdir(parents=True)
    (capi.parent / "__init__.py").write_text("")
    (capi / "libonnxruntime_providers_cuda.so").write_bytes(b"")
    available, reason = _probe(
        "import json, runtimes; print(json.dumps(runtimes.is_available('onnxruntime-cuda')))",
        tmp_path, tmp_path / "site", env={"CUDA_VISIBLE_DEVICES": ""})
    assert not available and "no GPU is visible" in reason and "CUDA_VISIBLE_DEVICES" in reason


def test_cpu_only_onnxruntime_says_what_to_install():
    from runtimes.onnxrt import ort_provider_library

    if ort_provider_library("cuda"):
        pytest.skip("this onnxruntime has the CUDA provider")
    available, reason = runtimes.is_available("onnxruntime-cuda")
    assert not available
    assert "pip uninstall -y onnxruntime && pip install onnxruntime-gpu" in reason


# -- targets -------------------------------------------------------------------------------------
def test_targets_resolve_inside_an_export_dir(export_dir, tmp_path):
    resolve = runtimes.resolve_target
    assert resolve("onnxruntime", export_dir) == export_dir / "model.onnx"
    assert resolve("onnxruntime-trt", export_dir, fp16=True) == export_dir / "model.onnx"
    assert resolve("onnxruntime", export_dir / "model.onnx") == export_dir / "model.onnx"
    with pytest.raises(UsageError, match=r"model\.fp16\.onnx is missing.*--fp16"):
        resolve("onnxruntime-cuda", tmp_path, fp16=True)
    with pytest.raises(UsageError, match=r"model\.onnx is missing: export it"):
        resolve("tensorrt", tmp_path)  # an engine needs its graph
    with pytest.raises(UsageError, match="does not exist"):
        resolve("onnxruntime", tmp_path / "nope.onnx")


def test_an_export_dir_gives_the_tensorrt_runner_its_engine_built_once(tmp_path):
    """The engine is built on first use and reused while the graph's sha256 is unchanged."""
    from runtimes.trt_backends import select_backend

    try:
        select_backend()
    except DependencyError as missing:
        pytest.skip(str(missing))
    export = tmp_path / "export"
    write_tiny_onnx(export / "model.onnx")
    engine = runtimes.resolve_target("tensorrt", export)
    assert engine == export / "model.engine" and engine.read_bytes()[:3] in (b"vtr", b"ftr")
    built = engine.stat().st_mtime_ns
    assert runtimes.resolve_target("tensorrt", export) == engine
    assert engine.stat().st_mtime_ns == built  # reused, not rebuilt
    write_tiny_onnx(export / "model.onnx", seed=3)
    runtimes.resolve_target("tensorrt", export)
    assert engine.stat().st_mtime_ns != built  # the graph changed: rebuilt


def test_paddle_program_forms(tmp_path):
    folder = tmp_path / "export" / "paddle"
    folder.mkdir(parents=True)
    (folder / "inference.json").write_text("{}")
    with pytest.raises(UsageError, match="inference.pdiparams is missing"):
        runtimes.resolve_target("paddle", tmp_path / "export")
    (folder / "inference.pdiparams").write_bytes(b"")
    program = folder / "inference.json"
    for target in (tmp_path / "export", folder, folder / "inference", program):
        assert runtimes.resolve_target("paddle", target) == program
    with pytest.raises(UsageError, match="no Paddle inference program"):
        runtimes.resolve_target("paddle", tmp_path / "elsewhere")


def test_a_runtime_is_one_module_and_one_registry_line(tmp_path, monkeypatch):
    """A runner class declares everything about itself; RUNNERS is the only list it joins."""
    import importlib

    from runtimes import factory

    availability = importlib.import_module("runtimes.availability")  # not the function
    (tmp_path / "toy_runner.py").write_text(
        "from runtimes.onnxrt import OnnxRuntimeRunner\n"
        "class ToyRunner(OnnxRuntimeRunner):\n"
        "    kind = 'toy'\n"
        "    description = 'ONNX Runtime under another name'\n"
        "    @classmethod\n"
        "    def unavailable_reason(cls):\n"
        "        return None\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(availability, "RUNNERS", (*availability.RUNNERS, "toy_runner:ToyRunner"))
    availability.runner_classes.cache_clear()
    try:
        rows = {row["kind"]: row for row in availability.availability()}
        assert rows["toy"]["available"] and rows["toy"]["description"].startswith("ONNX Runtime")
        onnx = write_tiny_onnx(tmp_path / "export" / "model.onnx")
        assert factory.resolve_target("toy", onnx.parent) == onnx  # the class's export_file
        feed = _batch(onnx.parent, 2)
        with factory.create_runner("toy", onnx.parent) as toy, \
                factory.create_runner("onnxruntime", onnx.parent) as ort:
            np.testing.assert_array_equal(toy.infer(feed)["logits"], ort.infer(feed)["logits"])
    finally:
        monkeypatch.undo()
        availability.runner_classes.cache_clear()
    with pytest.raises(UsageError, match="unknown runtime 'toy'"):
        availability.check_kind("toy")
