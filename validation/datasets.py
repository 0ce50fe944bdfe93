"""Labelled image sets in the two layouts users have, read as lists of (path, label).

- PaddleClas's list file (``val_list.txt``): one ``relative/path label`` per line, paths
  relative to the dataset folder, as in PaddleClas's ImageNet evaluation configs.
- One folder per class, named after its class: a class name of the model's label list (the
  whole name, or its first comma-separated part: ``tench``), an ImageNet synset (``n01440764``,
  for models of ImageNet-1k's classes) or the class index; any subset of the classes
  (ImageNette-style). Folders named otherwise are one per class, in sorted order (the class
  index is the folder's place; empty folders count).

Only names and labels are held (a few MB for ImageNet's 50,000 images); images are decoded
later, one batch at a time. Every problem with the listing itself is a one-line UsageError.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
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
                 limit: int | None = None, class_names: Sequence[str] = (),
                 synsets: Sequence[str] = ()) -> Dataset:
    """The dataset at ``root``: from the list file ``labels``, else one folder per class
    (named by ``class_names`` or ``synsets``, index by index, or in sorted order).

    ``limit`` keeps N samples evenly spread over the listing (every class of a folder
    layout, not the first class only), the same N for every run.
    """
    folder = Path(root)
    if not folder.is_dir():
        raise UsageError(f"dataset folder {folder} does not exist; pass --dataset DIR")
    if labels is not None:
        samples, layout = _from_list(folder, Path(labels), num_classes), "list"
    else:
        samples, layout = _from_folders(folder, num_classes, class_names, synsets), "folders"
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


def class_keys(num_classes: int, class_names: Sequence[str] = (),
               synsets: Sequence[str] = ()) -> dict[str, int]:
    """Every folder name that names one class: its index, synset, name, and the first part of
    its name (``tench`` of ``tench, Tinca tinca``) where no other class shares it."""
    keys: dict[str, int] = {str(i): i for i in range(num_classes)}
    keys.update({synset: i for i, synset in enumerate(synsets)})
    short: dict[str, list[int]] = {}
    for index, name in enumerate(class_names):
        short.setdefault(name.split(",")[0].strip(), []).append(index)
    keys.update({name: found[0] for name, found in short.items() if len(found) == 1})
    keys.update({name: index for index, name in enumerate(class_names)})
    return keys


def _from_folders(root: Path, num_classes: int, class_names: Sequence[str] = (),
                  synsets: Sequence[str] = ()) -> list[Sample]:
    folders = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise UsageError(f"{root} has no class folders; pass --labels FILE for a list file, or "
                         "put the images in one folder per class")
    keys = class_keys(num_classes, class_names, synsets)
    if all(folder in keys for folder in folders):
        classes = [(keys[folder], folder) for folder in folders]
        if len({label for label, _ in classes}) < len(classes):
            raise UsageError(f"{root} has two folders of one class; keep one folder per class")
    elif len(folders) == num_classes:
        classes = list(enumerate(folders))
    else:
        unknown = next(folder for folder in folders if folder not in keys)
        shown = ", ".join(list(class_names)[:5]) + (", ..." if len(class_names) > 5 else "")
        raise UsageError(f"{root}: class folder {unknown!r} names no class of the model "
                         f"({shown or f'classes 0 to {num_classes - 1}'}), and its "
                         f"{len(folders)} folders are not one per class ({num_classes}); name "
                         "each folder after its class (or pass --labels FILE)")
    samples: list[Sample] = []
    for label, name in classes:
        files = sorted(p for p in (root / name).rglob("*")
                       if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        samples += [Sample(len(samples) + i, p.relative_to(root).as_posix(), label)
                    for i, p in enumerate(files)]
    return samples
