"""``export-onnx MODEL --pretrained``: official weights downloaded once, resumably, checked.

A real HTTP server on 127.0.0.1 (never the internet) stands in for PaddleClas's host through
``CROSSRT_PRETRAINED_MIRROR``; it honours Range requests as a real one does, counts what it is
asked, and can fail (404) or cut a response short (a dropped connection).
"""

from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

import crossrt
from core.errors import UsageError
from exporter.pretrained import HOME_ENV, MIRROR_ENV, cache_dir, fetch_pretrained, pretrained_url
from exporter.specs import get_spec

SPEC = get_spec("EfficientNetB0_small")
NAME = "EfficientNetB0_small_pretrained.pdparams"


class Server:
    """Serves ``files`` by name; ``cut`` sends only that many bytes of a full response."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.requests: list[tuple[str, str | None]] = []  # (path, Range header)
        self.cut: int | None = None
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                server.requests.append((self.path, self.headers.get("Range")))
                body = server.files.get(self.path.lstrip("/"))
                if body is None:
                    self.send_error(404, "Not Found")
                    return
                start = int(self.headers["Range"].split("=")[1].rstrip("-")) \
                    if self.headers.get("Range") else 0
                self.send_response(206 if start else 200)
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                self.wfile.write(body[start:][:server.cut] if server.cut else body[start:])

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/dygraph"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(monkeypatch, tmp_path):
    served = Server()
    monkeypatch.setenv(HOME_ENV, str(tmp_path / "home"))
    monkeypatch.setenv(MIRROR_ENV, served.url)
    yield served
    served.close()


def test_the_url_is_paddleclass_own_and_the_mirror_replaces_its_host(monkeypatch):
    monkeypatch.delenv(MIRROR_ENV, raising=False)
    assert pretrained_url(get_spec("ResNeXt101_32x16d_wsl")) == (
        "https://paddle-imagenet-models-name.bj.bcebos.com/dygraph/"
        "ResNeXt101_32x16_wsl_pretrained.pdparams")  # PaddleClas's spelling, without the d
    monkeypatch.setenv(MIRROR_ENV, "http://mirror.internal/paddle/")
    assert pretrained_url(SPEC) == f"http://mirror.internal/paddle/{NAME}"
    monkeypatch.delenv(HOME_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", "/var/cache/me")
    assert cache_dir() == Path("/var/cache/me/crossrt/weights")


def test_downloaded_once_into_the_cache_then_reused(server):
    payload = bytes(range(256)) * 5000
    server.files[f"dygraph/{NAME}"] = payload
    first = fetch_pretrained(SPEC)
    assert first.path == cache_dir() / NAME and first.path.read_bytes() == payload
    assert (first.bytes, first.sha256) == (len(payload), hashlib.sha256(payload).hexdigest())
    assert first.url == f"{server.url}/{NAME}"
    again = fetch_pretrained(SPEC)
    assert again == first and len(server.requests) == 1  # no second request
    assert not list(cache_dir().glob("*.part"))


def test_an_interrupted_download_resumes_where_it_stopped(server):
    payload = hashlib.sha256(b"seed").digest() * 40000  # 1.28 MB
    server.files[f"dygraph/{NAME}"] = payload
    server.cut = 500_000
    with pytest.raises(UsageError, match="stopped at 500,000 of 1,280,000 bytes; run again"):
        fetch_pretrained(SPEC)
    part = cache_dir() / f"{NAME}.part"
    assert part.stat().st_size == 500_000 and not (cache_dir() / NAME).exists()
    server.cut = None
    done = fetch_pretrained(SPEC)
    assert server.requests[-1] == (f"/dygraph/{NAME}", "bytes=500000-")
    assert done.path.read_bytes() == payload and not part.exists()


def test_http_errors_and_no_network_are_one_line_naming_the_url_and_weights(server, tmp_path,
                                                                             capsys, monkeypatch):
    out = tmp_path / "out"
    code = crossrt.main(["export-onnx", "EfficientNetB0_small", "--pretrained", "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and not out.exists()
    assert f"cannot download {server.url}/{NAME}: HTTP 404" in err[0] and "--weights" in err[0]
    server.close()  # nothing listens there any more: as offline
    code = crossrt.main(["export-onnx", "EfficientNetB0_small", "--pretrained", "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "cannot download" in err[0] and "--weights" in err[0]
    with pytest.raises(SystemExit) as exit_:  # argparse's own refusal
        crossrt.main(["export-onnx", "EfficientNetB0_small", "--pretrained", "--weights", "x"])
    assert exit_.value.code == 2 and "not allowed with argument" in capsys.readouterr().err


@pytest.mark.slow
def test_a_pretrained_export_loads_strictly_and_records_url_size_and_sha256(server, tmp_path,
                                                                          capsys):
    import paddle

    from exporter.zoo import build_model

    checkpoint = tmp_path / "ckpt.pdparams"
    state = build_model(SPEC).state_dict()
    paddle.save(state, str(checkpoint))
    payload = checkpoint.read_bytes()
    server.files[f"dygraph/{NAME}"] = payload
    out = tmp_path / "export"
    code = crossrt.main(["export-onnx", "EfficientNetB0_small", "--pretrained", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    weights = json.loads((out / "manifest.json").read_text())["weights"]
    assert weights["url"] == f"{server.url}/{NAME}" and weights["bytes"] == len(payload)
    assert weights["sha256"] == hashlib.sha256(payload).hexdigest()
    # a damaged download (a key lost) does not load: named, and dropped from the cache
    (cache_dir() / NAME).unlink()
    state.pop(next(iter(state)))
    paddle.save(state, str(checkpoint))
    server.files[f"dygraph/{NAME}"] = checkpoint.read_bytes()
    code = crossrt.main(["export-onnx", "EfficientNetB0_small", "--pretrained", "--out",
                         str(tmp_path / "again")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and "1 missing keys" in err[-1] and "removed from the cache" in err[-1]
    assert not (cache_dir() / NAME).exists() and not (tmp_path / "again").exists()
