"""The label lists crossrt bundles: ImageNet-1k's class names and WordNet synsets, index by index.

``imagenet1k_label_list.txt`` is PaddleClas's (``ppcls/utils``, Apache-2.0): ``<index> <names>``
per line. ``imagenet1k_synsets.txt`` is the sorted synset list (``n01440764`` ...) that the
class-folder layout of ImageNet uses, the same order (from timm, Apache-2.0). Read on first use.
"""

from __future__ import annotations

import functools
from pathlib import Path

DATA = Path(__file__).resolve().parent / "data"
IMAGENET_1K = "imagenet-1k"


@functools.cache
def label_set(name: str) -> tuple[str, ...]:
    """The class names of a bundled label list, index by index."""
    if name != IMAGENET_1K:
        raise ValueError(f"no bundled label list {name!r} (crossrt has {IMAGENET_1K!r})")
    lines = (DATA / "imagenet1k_label_list.txt").read_text(encoding="utf-8").splitlines()
    return tuple(line.split(" ", 1)[1] for line in lines)


@functools.cache
def imagenet_synsets() -> tuple[str, ...]:
    """ImageNet-1k's WordNet synsets (``n01440764`` ...), index by index."""
    return tuple((DATA / "imagenet1k_synsets.txt").read_text(encoding="ascii").split())
