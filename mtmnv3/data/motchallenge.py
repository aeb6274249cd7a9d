"""MOTChallenge sequence folders as a dataset (moved from :mod:`mtmnv3.data.datasets`)."""

from __future__ import annotations

import os
from pathlib import Path

from mtmnv3.core.registry import DATASETS
from mtmnv3.data.common import DataError, MultiTaskBaseDataset, empty_annotations
from mtmnv3.data.mot import read_mot_gt, read_seqinfo

__all__ = ["MOTChallengeDataset"]


def _check_files_exist(paths: list[str], what: str) -> None:
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise FileNotFoundError(f"{what}: image file not found: {missing[0]}{more}")


@DATASETS.register_module()
class MOTChallengeDataset(MultiTaskBaseDataset):
    """Tracking/detection frames from MOTChallenge sequence folders.

    Args:
        data_root: folder holding sequence folders (each with ``seqinfo.ini``).
        seq_names: sequences to load (default: every sub-folder with a
            ``seqinfo.ini``, sorted). Video ids are 1-based in this order.
        classes: class names; the ``class`` column k (1-based) is ``classes[k-1]``.
        with_gt: read ``gt/gt.txt`` (False for test sequences without it).
        pipeline: transforms.
        **kwargs: forwarded to mmengine's ``BaseDataset``.
    """

    def __init__(
        self,
        data_root: str,
        seq_names: list[str] | None = None,
        classes: tuple[str, ...] = ("object",),
        with_gt: bool = True,
        pipeline: list | None = None,
        **kwargs,
    ) -> None:
        if not classes:
            raise ValueError(f"classes must be a non-empty sequence of names, got {classes!r}")
        self.seq_names = list(seq_names) if seq_names is not None else None
        self.with_gt = with_gt
        metainfo = dict(kwargs.pop("metainfo", None) or {})
        metainfo.setdefault("classes", tuple(classes))
        metainfo.setdefault("cls_classes", ())
        super().__init__(data_root=data_root, pipeline=pipeline, metainfo=metainfo, **kwargs)

    def load_data_list(self) -> list[dict]:
        root = Path(self.data_root)
        if not root.is_dir():
            raise FileNotFoundError(f"MOTChallenge root not found: {root}")
        names = self.seq_names
        if names is None:
            names = sorted(p.name for p in root.iterdir() if (p / "seqinfo.ini").is_file())
            if not names:
                raise DataError(f"{root}: no sequence folders with a seqinfo.ini")
        self._metainfo["videos"] = tuple(names)
        num_classes = len(self.metainfo["classes"])
        data = []
        for video_index, name in enumerate(names):
            seq_dir = root / name
            info = read_seqinfo(seq_dir / "seqinfo.ini")
            frames = [os.fspath(info.frame_path(seq_dir, t)) for t in range(1, info.seq_length + 1)]
            _check_files_exist(frames, os.fspath(seq_dir / "seqinfo.ini"))
            gt = read_mot_gt(seq_dir / "gt" / "gt.txt", info, num_classes) if self.with_gt else {}
            tasks = ("det", "track") if self.with_gt else ()
            for t, img_path in enumerate(frames, 1):
                data.append(
                    {
                        "img_path": img_path,
                        "img_id": len(data),
                        "video_id": video_index + 1,
                        "frame_id": t,
                        **gt.get(t, empty_annotations()),
                        "tasks": tasks,
                    }
                )
        return data
