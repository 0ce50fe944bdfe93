"""Start and stop a real Triton server (PyPI's nvidia-pytriton) on a crossrt model repository.

Used by the serving tests and ``benchmarks/bench_triton.py``: the server binary and its Python
backend come from the environment ``scripts/triton_env.py`` builds; it listens on 127.0.0.1
only, on free ports, is waited for with a bound (``/v2/health/ready``), and is stopped by its
PID (SIGTERM, then SIGKILL). Its log goes to a file, named in every error.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENV_VARIABLE = "CROSSRT_TRITON_ENV"
READY_TIMEOUT_S = 90


def environment() -> Path:
    return Path(os.environ.get(ENV_VARIABLE) or ROOT / ".triton-env")


def missing() -> str | None:
    """None when the Triton environment is there, else why not and the command that builds it."""
    env = environment()
    if not (env / "bin" / "python").is_file() or not _site_packages(env).joinpath(
            "pytriton", "tritonserver", "bin", "tritonserver").is_file():
        return (f"no Triton server environment at {env}: python scripts/triton_env.py "
                "(nvidia-pytriton, numpy<2, OpenCV, Pillow, ONNX Runtime)")
    return None


def _site_packages(env: Path) -> Path:
    return next((env / "lib").glob("python3.*/site-packages"))


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


class TritonServer:
    """``with TritonServer(repo) as server:`` server.http / server.grpc are host:port."""

    def __init__(self, repository: Path, *options: str, until: str = "ready"):
        """``options``: more tritonserver flags; ``until``: wait for /v2/health/``until``
        (``live`` where models are meant to stay unavailable, e.g. without their backend)."""
        self.repository = repository.resolve()
        self.options, self.until = options, until
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> TritonServer:
        env_dir = environment()
        site = _site_packages(env_dir)
        server = site / "pytriton" / "tritonserver"
        python = subprocess.run([str(env_dir / "bin" / "python"), "-c",
                                 "import sys, sysconfig; print(sysconfig.get_config_var("
                                 "'LIBDIR')); print(f'{sys.version_info[0]}."
                                 "{sys.version_info[1]}')"],
                                capture_output=True, text=True, check=True).stdout.split()
        libdir, version = python
        self.work = Path(tempfile.mkdtemp(prefix="crossrt-triton-"))
        backend = self.work / "backends" / "python"
        backend.mkdir(parents=True)
        for name in ("libtriton_python.so", "triton_python_backend_utils.py"):
            shutil.copy(server / "backends" / "python" / name, backend / name)
        shutil.copy(server / "python_backend_stubs" / version / "triton_python_backend_stub",
                    backend / "triton_python_backend_stub")
        http, grpc, metrics = _free_ports(3)
        self.http, self.grpc = f"127.0.0.1:{http}", f"127.0.0.1:{grpc}"
        self.log = self.work / "tritonserver.log"
        env = {**os.environ, "LD_LIBRARY_PATH": f"{libdir}:{site / 'nvidia_pytriton.libs'}",
               "PATH": f"{env_dir / 'bin'}:{os.environ.get('PATH', '')}"}
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                [str(server / "bin" / "tritonserver"), "--model-repository",
                 str(self.repository), "--backend-directory", str(self.work / "backends"),
                 "--http-address", "127.0.0.1", "--grpc-address", "127.0.0.1",
                 "--metrics-address", "127.0.0.1", "--http-port", str(http),
                 "--grpc-port", str(grpc), "--metrics-port", str(metrics),
                 "--allow-gpu-metrics=false", "--pinned-memory-pool-byte-size=0",
                 "--cuda-memory-pool-byte-size=0:0", "--exit-timeout-secs=10", *self.options],
                stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        try:
            self._wait_ready()
        except BaseException:
            self.__exit__()
            raise
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"tritonserver exited ({self.process.returncode}); its log: "
                                   f"{self.log.read_text(errors='replace')[-3000:]}")
            try:
                with urllib.request.urlopen(f"http://{self.http}/v2/health/{self.until}",
                                            timeout=2):
                    return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"tritonserver not ready after {READY_TIMEOUT_S} s; its log: "
                           f"{self.log.read_text(errors='replace')[-3000:]}")

    def __exit__(self, *exc: object) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        shutil.rmtree(self.work, ignore_errors=True)
