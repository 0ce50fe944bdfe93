"""PaddleClas's official weights: ``export-onnx MODEL --pretrained``.

A zoo model's ``*_pretrained.pdparams`` is downloaded once from the URL its family declares
(PaddleClas's own ``MODEL_URLS``) into the cache, ``$CROSSRT_HOME/weights`` or else
``$XDG_CACHE_HOME/crossrt/weights`` (``~/.cache/crossrt/weights``), and reused from there. The
download goes to ``NAME.part`` and is renamed into place only when complete; an interrupted one
resumes where it stopped (an HTTP Range request). ``CROSSRT_PRETRAINED_MIRROR`` replaces
PaddleClas's host by a mirror of the same files (an internal server, or the tests' local one).
The export then loads the file strictly (no missing or unexpected key) and records its URL,
size and sha256. This is the one place crossrt reaches the network, and only when asked.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from core import files
from core.errors import UsageError
from core.log import log
from core.provenance import sha256_file
from core.spec import ModelSpec

HOME_ENV = "CROSSRT_HOME"
MIRROR_ENV = "CROSSRT_PRETRAINED_MIRROR"
TIMEOUT_S = 30  # per connection and per read: a stalled server is an error, not a hang
_CHUNK = 1 << 20
_PART = ".part"


@dataclass(frozen=True)
class Pretrained:
    """A downloaded checkpoint: where it is and what the manifest records of it."""

    path: Path
    url: str
    bytes: int
    sha256: str

    def record(self) -> dict[str, object]:
        return {"kind": "checkpoint", "source": "pretrained", "url": self.url,
                "bytes": self.bytes, "sha256": self.sha256}


def cache_dir() -> Path:
    if os.environ.get(HOME_ENV):
        return Path(os.environ[HOME_ENV]) / "weights"
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "crossrt" / "weights"


def pretrained_url(spec: ModelSpec) -> str:
    """The official checkpoint's URL (through the mirror, when one is set)."""
    from exporter.zoo import family_of

    if spec.custom:
        raise UsageError(f"{spec.name} is a Paddle inference model: its weights are in it "
                         "already (leave out --pretrained)")
    url = family_of(spec).MODEL_URLS[spec.name]
    mirror = os.environ.get(MIRROR_ENV)
    return f"{mirror.rstrip('/')}/{url.rsplit('/', 1)[1]}" if mirror else url


def fetch_pretrained(spec: ModelSpec) -> Pretrained:
    """The model's official checkpoint from the cache, downloaded first when not there."""
    url = pretrained_url(spec)
    cache = cache_dir()
    target = cache / url.rsplit("/", 1)[1]
    with files.disk_errors(target), files.locked(cache, "the weights cache"):
        if not target.is_file():
            cache.mkdir(parents=True, exist_ok=True)
            _download(url, target)
        else:
            log.info(f"{spec.name}: official weights from the cache, {target}")
    return Pretrained(target, url, target.stat().st_size, sha256_file(target))


def forget(pretrained: Pretrained) -> None:
    """Drop a cached file that did not load (a damaged download), so the next run fetches it."""
    pretrained.path.unlink(missing_ok=True)


def _download(url: str, target: Path) -> None:
    part = target.with_name(target.name + _PART)
    have = part.stat().st_size if part.is_file() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    fix = (f"pass a checkpoint you have with --weights FILE, or set {MIRROR_ENV} to a mirror "
           "of PaddleClas's weights")
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            resumed = have > 0 and response.status == 206
            length = response.headers.get("Content-Length")
            total = (int(length) + (have if resumed else 0)) if length else None
            log.info(f"downloading {url}" + (f" (resuming at {have:,} bytes)" if resumed else "")
                     + f" to {target}")
            with open(part, "ab" if resumed else "wb") as out, _Bar(target.name, total) as bar:
                done = have if resumed else 0
                bar.update(done)
                while chunk := response.read(_CHUNK):
                    out.write(chunk)
                    done += len(chunk)
                    bar.update(done)
    except urllib.error.HTTPError as error:
        if error.code == 416 and have:  # nothing past what we have: the .part is complete
            os.replace(part, target)
            return
        raise UsageError(f"cannot download {url}: HTTP {error.code} {error.reason}; {fix}"
                         ) from None
    except (urllib.error.URLError, TimeoutError, ConnectionError) as error:
        reason = getattr(error, "reason", None) or error
        raise UsageError(f"cannot download {url} ({reason}); what arrived is kept and the "
                         f"next run resumes it; or {fix}") from None
    if total is not None and done != total:
        raise UsageError(f"the download of {url} stopped at {done:,} of {total:,} bytes; run "
                         f"again to resume it, or {fix}")
    os.replace(part, target)


class _Bar:
    """rich's download bar on a terminal; on a log, one line at the end."""

    def __init__(self, name: str, total: int | None):
        self.name, self.total = name, total
        self.progress = None
        if sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                Progress,
                TimeRemainingColumn,
                TransferSpeedColumn,
            )

            self.progress = Progress("{task.description}", BarColumn(), DownloadColumn(),
                                     TransferSpeedColumn(), TimeRemainingColumn(),
                                     console=Console(stderr=True), transient=True)
            self.task = self.progress.add_task(name, total=total)

    def __enter__(self) -> _Bar:
        if self.progress is not None:
            self.progress.start()
        return self

    def update(self, done: int) -> None:
        self.done = done
        if self.progress is not None:
            self.progress.update(self.task, completed=done)

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()
        log.info(f"{self.name}: {getattr(self, 'done', 0):,} bytes")
