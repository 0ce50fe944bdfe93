"""Labelled image sets in the two layouts users have, read as lists of (path, label).

- PaddleClas's list file (``val_list.txt``): one ``relative/path label`` per line, paths
  relative to the dataset folder, as in PaddleClas's ImageNet evaluation configs.
- One folder per class: the class index is the folder's place in the sorted folder names
  (for ImageNet's synset folders, the standard 1000-class order); empty folders count.

Only names and labels are held (a few MB for ImageNet's 50,000 images); images are decoded
later, one batch at a time. Every problem with the listing itself is a one-line UsageError.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from core import limits
from core.errors import UsageError
from core.preprocess import IMAGE_SUFFIXES


@dataclass(frozen=True)
class Sample:
    index: int  # place in the full listing (stable under --limit and --resume)
    path: str  # relative to the dataset folder
    label: int


@dataclass(frozen=True)
class Dataset:
    root: Path
    layout: str  # "list" or "folders"
    samples: tuple[Sample, ...]
    listed: int  # samples in the full listing, before --limit
    labels_file: Path | None = None

    def file(self, sample: Sample) -> Path:
        return self.root / sample.path

    def fingerprint(self) -> str:
        """sha256 of the (path, label) pairs evaluated: names the image set of a run."""
        digest = hashlib.sha256()
        for sample in self.samples:
            digest.update(f"{sample.index}\t{sample.path}\t{sample.label}\n".encode())
        return digest.hexdigest()

    def describe(self) -> dict[str, object]:
        return {"root": str(self.root), "layout": self.layout,
                "labels": str(self.labels_file) if self.labels_file else None,
                "listed": self.listed, "evaluated": len(self.samples),
                "sha256": self.fingerprint()}


def load_dataset(root: str | Path, labels: str | Path | None = None, *, num_classes: int,
                 limit: int | None = None) -> Dataset:
    """The dataset at ``root``: from the list file ``labels``, else one folder per class.

    ``limit`` keeps N samples evenly spread over the listing (every class of a folder
    layout, not the first class only), the same N for every run.
    """
    folder = Path(root)
    if not folder.is_dir():
        raise UsageError(f"dataset folder {folder} does not exist; pass --dataset DIR")
    if labels is not None:
        samples, layout = _from_list(folder, Path(labels), num_classes), "list"
    else:
        samples, layout = _from_folders(folder, num_classes), "folders"
    if not samples:
        where = f"list file {labels}" if labels is not None else f"class folders of {folder}"
        raise UsageError(f"the dataset is empty: no images in the {where}")
    listed = len(samples)
    if limit is not None:
        if limit < 1:
            raise UsageError(f"--limit must be at least 1, got {limit}")
        if limit < listed:
            samples = [samples[i * listed // limit] for i in range(limit)]
    return Dataset(folder, layout, tuple(samples), listed,
                   Path(labels) if labels is not None else None)


def _from_list(root: Path, labels: Path, num_classes: int) -> list[Sample]:
    if not labels.is_file():
        raise UsageError(f"list file {labels} does not exist; pass --labels val_list.txt "
                         "(one 'relative/path label' per line)")
    limits.check_file_size(labels, limits.TEXT_BYTES, "list file")
    try:
        text = labels.read_text(encoding="utf-8-sig")  # a byte-order mark is not a path
    except OSError as exc:
        raise UsageError(f"cannot read list file {labels}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise UsageError(f"list file {labels} is not UTF-8 text (byte {exc.start}); save it "
                         "as UTF-8") from None
    samples: list[Sample] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.strip().rsplit(None, 1)  # a path may hold spaces; the label may not
        if len(fields) != 2 or not fields[1].lstrip("-").isdigit():
            raise UsageError(f"{labels} line {number}: expected 'relative/path label' with an "
                             f"integer label, got {line.strip()!r}")
        label = int(fields[1])
        if not 0 <= label < num_classes:
            raise UsageError(f"{labels} line {number}: label {label} is outside the model's "
                             f"{num_classes} classes (0 to {num_classes - 1})")
        samples.append(Sample(len(samples), fields[0], label))
    return samples


def _from_folders(root: Path, num_classes: int) -> list[Sample]:
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise UsageError(f"{root} has no class folders; pass --labels FILE for a list file, or "
                         "put the images in one folder per class")
    if len(classes) != num_classes:
        raise UsageError(f"{root} has {len(classes)} class folders but the model has "
                         f"{num_classes} classes; the class index is the folder's sorted place, "
                         "so every class needs its folder (or pass --labels FILE)")
    samples: list[Sample] = []
    for label, name in enumerate(classes):
        files = sorted(p for p in (root / name).rglob("*")
                       if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        samples += [Sample(len(samples) + i, p.relative_to(root).as_posix(), label)
                    for i, p in enumerate(files)]
    return samples
