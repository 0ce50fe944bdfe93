"""A bounded load test of a crossrt Triton repository on a real server (loopback only).

EfficientNetB0 (synthetic weights) exported by crossrt, served by PyPI's tritonserver 2.51 from
``crossrt triton --ensemble --classifier-backend python --dynamic-batching`` (JPEG in, top-5
out). CLIENTS HTTP clients send REQUESTS requests each at once, every one a bundled photograph
as JPEG bytes; every answer is checked against crossrt's own result for that photograph (a
lost or wrong answer is counted, not hidden). Reported: p50/p99 latency, throughput, lost
requests, and beside them, in the same run, crossrt's own in-process path for one image
(decode, preprocess, ONNX Runtime) as the ratio served / in-process at p50.

    python scripts/triton_env.py            # once: the server's environment
    python benchmarks/bench_triton.py [--clients 8] [--requests 200]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

MODEL = "EfficientNetB0"


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.array(values), q))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()

    import onnxruntime as ort
    import tritonclient.http as http
    from triton_server import TritonServer, missing

    from core.preprocess import bundled_photos, decode_image, preprocess
    from exporter.export import export_onnx
    from exporter.triton import TritonRequest, write_repository

    if (reason := missing()) is not None:
        raise SystemExit(reason)
    with tempfile.TemporaryDirectory() as scratch:
        export = export_onnx(MODEL, out_dir=Path(scratch) / "export")
        repo = write_repository(TritonRequest(
            export=export.path, out=Path(scratch) / "repo", ensemble=True,
            classifier_backend="python", dynamic_batching=True)).path
        photos = [cv2.imencode(".jpg", image[:, :, ::-1])[1].tobytes()
                  for _, image in bundled_photos()]
        from exporter.specs import get_spec

        spec = get_spec(MODEL)
        session = ort.InferenceSession(str(export.path / "model.onnx"),
                                       providers=["CPUExecutionProvider"])

        def in_process(data: bytes) -> int:
            batch = preprocess(decode_image(data), spec)[None]
            return int(session.run(None, {"x": batch})[0].argmax())

        expected = [in_process(p) for p in photos]
        local = []
        for index in range(50):
            start = time.perf_counter()
            in_process(photos[index % len(photos)])
            local.append((time.perf_counter() - start) * 1e3)

        with TritonServer(repo) as server:
            def client_run(index: int) -> list[tuple[float, bool]]:
                client = http.InferenceServerClient(server.http)
                out = []
                for request in range(args.requests):
                    which = (index + request) % len(photos)
                    tensor = http.InferInput("IMAGE", [1, 1], "BYTES")
                    tensor.set_data_from_numpy(np.array([[photos[which]]], dtype=object))
                    start = time.perf_counter()
                    try:
                        ids = client.infer(f"{MODEL}_pipeline", [tensor]).as_numpy("CLASS_IDS")
                        right = int(ids[0, 0]) == expected[which]
                    except Exception:  # noqa: BLE001 - a lost request is counted
                        right = False
                    out.append(((time.perf_counter() - start) * 1e3, right))
                return out

            began = time.perf_counter()
            with ThreadPoolExecutor(args.clients) as pool:
                results = [r for run in pool.map(client_run, range(args.clients)) for r in run]
            wall = time.perf_counter() - began
    latencies = [ms for ms, _ in results]
    lost = sum(not right for _, right in results)
    print(f"{MODEL}, JPEG in, top-5 out, {args.clients} clients x {args.requests} requests "
          f"(HTTP, loopback, dynamic batching, Python-backend classifier on ONNX Runtime CPU)")
    print(f"served: p50 {percentile(latencies, 50):.1f} ms, p99 {percentile(latencies, 99):.1f} "
          f"ms, {len(results) / wall:.1f} requests/s, {lost} of {len(results)} lost or wrong")
    print(f"crossrt in process, one image at a time: p50 {statistics.median(local):.1f} ms; "
          f"served p50 / in-process p50 = "
          f"{percentile(latencies, 50) / statistics.median(local):.1f}x (8 requests in flight)")
    return 0 if lost == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
