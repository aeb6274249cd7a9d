"""Fashion-MNIST idx files: reader, discovery of the Debian package, dataset.

The Debian package ``dataset-fashion-mnist`` installs the four idx files
(gzip-compressed) under ``/usr/share/datasets/fashion-mnist``; the
environment variable ``MTMNV3_FASHION_MNIST_DIR`` points elsewhere. Plain
and ``.gz`` idx files are both read.
"""

from __future__ import annotations

import gzip
import os
from functools import lru_cache
from pathlib import Path

import numpy as np

from mtmnv3.core.registry import DATASETS
from mtmnv3.data.common import DataError, MultiTaskBaseDataset

__all__ = [
    "FASHION_MNIST_CLASSES",
    "FashionMNISTDataset",
    "fashion_mnist_dir",
    "find_fashion_mnist",
    "load_fashion_mnist",
    "read_idx",
]

FASHION_MNIST_CLASSES = (
    "t-shirt/top",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle boot",
)
DEBIAN_FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_ENV = "MTMNV3_FASHION_MNIST_DIR"
IDX_MAGIC_UBYTE = 0x08
IDX_HEADER_BYTES = 4
IDX_DIM_BYTES = 4
FASHION_MNIST_SPLITS = {"train": "train", "test": "t10k"}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an idx file (unsigned-byte data, optionally gzip-compressed).

    Args:
        path: ``*-idx{N}-ubyte`` or ``*-idx{N}-ubyte.gz``.

    Returns:
        np.uint8 array with the file's dimensions (e.g. (N, 28, 28) or (N,)).

    Raises:
        FileNotFoundError: missing file.
        DataError: bad magic number, unsupported data type or truncated data.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"idx file not found: {path}")
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        raise DataError(f"cannot read idx file {path}: {e}") from e
    if len(raw) < IDX_HEADER_BYTES:
        raise DataError(f"idx file {path} is too short ({len(raw)} bytes) for a header")
    zero0, zero1, dtype_code, ndim = raw[0], raw[1], raw[2], raw[3]
    if zero0 != 0 or zero1 != 0 or ndim == 0:
        raise DataError(f"idx file {path} has a bad magic number {raw[:4].hex()}")
    if dtype_code != IDX_MAGIC_UBYTE:
        raise DataError(
            f"idx file {path} has data type 0x{dtype_code:02x}; only unsigned byte (0x08) is supported"
        )
    header_end = IDX_HEADER_BYTES + IDX_DIM_BYTES * ndim
    if len(raw) < header_end:
        raise DataError(f"idx file {path} is truncated inside its header")
    dims = tuple(
        int.from_bytes(raw[IDX_HEADER_BYTES + 4 * i : IDX_HEADER_BYTES + 4 * (i + 1)], "big")
        for i in range(ndim)
    )
    expected = int(np.prod(dims))
    data = np.frombuffer(raw, dtype=np.uint8, offset=header_end)
    if data.size != expected:
        raise DataError(
            f"idx file {path} holds {data.size} bytes of data, expected {expected} for shape {dims}"
        )
    return data.reshape(dims)


def fashion_mnist_dir() -> Path:
    """The folder searched for the idx files (env override, else the Debian path)."""
    return Path(os.environ.get(FASHION_MNIST_ENV, DEBIAN_FASHION_MNIST_DIR))


def _idx_path(root: Path, stem: str) -> Path | None:
    for name in (f"{stem}.gz", stem):
        if (root / name).is_file():
            return root / name
    return None


def find_fashion_mnist(
    split: str = "train", root: str | os.PathLike | None = None
) -> tuple[Path, Path] | None:
    """Locate the images and labels idx files of a split.

    Args:
        split: ``'train'`` (60k) or ``'test'`` (10k).
        root: folder to search; default :func:`fashion_mnist_dir`.

    Returns:
        (images, labels) paths, or None when either is missing.
    """
    if split not in FASHION_MNIST_SPLITS:
        raise ValueError(f"split must be one of {sorted(FASHION_MNIST_SPLITS)}, got {split!r}")
    root = Path(root) if root is not None else fashion_mnist_dir()
    prefix = FASHION_MNIST_SPLITS[split]
    images = _idx_path(root, f"{prefix}-images-idx3-ubyte")
    labels = _idx_path(root, f"{prefix}-labels-idx1-ubyte")
    if images is None or labels is None:
        return None
    return images, labels


@lru_cache(maxsize=4)
def _load_pair(images_path: str, labels_path: str) -> tuple[np.ndarray, np.ndarray]:
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    if images.ndim != 3:
        raise DataError(f"idx images file {images_path} must be 3-D (N, H, W), got shape {images.shape}")
    if labels.ndim != 1:
        raise DataError(f"idx labels file {labels_path} must be 1-D (N,), got shape {labels.shape}")
    if len(images) != len(labels):
        raise DataError(f"{images_path} has {len(images)} images but {labels_path} has {len(labels)} labels")
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels


def load_fashion_mnist(
    images_path: str | os.PathLike, labels_path: str | os.PathLike
) -> tuple[np.ndarray, np.ndarray]:
    """Read (and cache, read-only) an images/labels idx pair.

    Returns:
        images uint8 (N, H, W) and labels uint8 (N,).
    """
    return _load_pair(os.fspath(images_path), os.fspath(labels_path))


@DATASETS.register_module()
class FashionMNISTDataset(MultiTaskBaseDataset):
    """Classification dataset read from Fashion-MNIST (or MNIST) idx files.

    Samples are grey images replicated to RGB (28, 28, 3) with
    ``tasks=('cls',)`` and ``img_path`` = ``'<images file>#<index>'``.

    Args:
        images_file: images idx file; default the ``split`` file of the
            installed Debian package.
        labels_file: labels idx file (required with ``images_file``).
        split: ``'train'`` or ``'test'`` when the files are looked up.
        classes: class names; default the ten Fashion-MNIST names.
        pipeline: transforms.
        **kwargs: forwarded to mmengine's ``BaseDataset``.
    """

    def __init__(
        self,
        images_file: str | None = None,
        labels_file: str | None = None,
        split: str = "train",
        classes: tuple[str, ...] = FASHION_MNIST_CLASSES,
        pipeline: list | None = None,
        **kwargs,
    ) -> None:
        if (images_file is None) != (labels_file is None):
            raise ValueError(
                f"give both images_file and labels_file or neither, got {images_file!r} and {labels_file!r}"
            )
        if images_file is None:
            found = find_fashion_mnist(split)
            if found is None:
                raise FileNotFoundError(
                    f"Fashion-MNIST idx files for split {split!r} not found in {fashion_mnist_dir()} "
                    "(install the Debian package dataset-fashion-mnist or set MTMNV3_FASHION_MNIST_DIR)"
                )
            images_file, labels_file = (os.fspath(p) for p in found)
        self.images_file = images_file
        self.labels_file = labels_file
        self._images: np.ndarray | None = None
        metainfo = dict(kwargs.pop("metainfo", None) or {})
        metainfo.setdefault("classes", tuple(classes))
        metainfo.setdefault("cls_classes", tuple(classes))
        super().__init__(pipeline=pipeline, metainfo=metainfo, **kwargs)

    def load_data_list(self) -> list[dict]:
        images, labels = load_fashion_mnist(self.images_file, self.labels_file)
        num_classes = len(self.metainfo["cls_classes"])
        bad = np.flatnonzero(labels >= num_classes)
        if bad.size:
            raise DataError(
                f"{self.labels_file}: label {int(labels[bad[0]])} at index {int(bad[0])} "
                f"is out of range for {num_classes} classes"
            )
        self._images = images
        return [
            {"img_path": f"{self.images_file}#{i}", "img_id": i, "gt_cls_label": int(lab), "tasks": ("cls",)}
            for i, lab in enumerate(labels)
        ]

    def load_image(self, info: dict) -> np.ndarray:
        if self._images is None:
            self._images, _ = load_fashion_mnist(self.images_file, self.labels_file)
        grey = self._images[info["img_id"]]
        return np.repeat(grey[:, :, None], 3, axis=2)
