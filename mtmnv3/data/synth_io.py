"""Write synthetic datasets to disk, cache them by their knobs, preview them.

On-disk layout written by :func:`write_synth_dataset` (and ``tools/make_synth.py``)::

    DIR/meta.json                       knobs, seed, classes, sequences (written last)
    DIR/mot/<seq>/seqinfo.ini           MOTChallenge sequence info
    DIR/mot/<seq>/img1/000001.jpg ...   frames (JPEG, RGB content)
    DIR/mot/<seq>/gt/gt.txt             MOTChallenge ground truth
    DIR/annotations/coco.json           COCO with videos, instance ids and cls labels
    DIR/annotations/classification.txt  "<image path> <cls label>" per frame

COCO image ``file_name`` and the classification paths are relative to DIR
and point at the same JPEG files as the MOTChallenge folders. In the COCO
json, ``frame_id`` is 0-based (mmdet's video convention) and
``mot_frame_id`` 1-based; ``instance_id`` is unique over the dataset and
``mot_instance_id`` is the identity in the sequence's ``gt.txt``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
import uuid
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import cv2
import numpy as np

from mtmnv3.core.fileio import atomic_open, atomic_write_json
from mtmnv3.core.registry import DATASETS
from mtmnv3.data.datasets import MultiTaskDataset
from mtmnv3.data.mot import MotSequenceInfo, format_mot_rows, write_seqinfo
from mtmnv3.data.sprites import AppearanceSource, resolve_appearance
from mtmnv3.data.synth import SceneConfig, cls_class_names, generate_sequence

__all__ = [
    "SPLITS",
    "SynthMultiTaskDataset",
    "ensure_synth_dataset",
    "render_preview",
    "write_synth_dataset",
]

#: Bump when the generator's output changes, so cached datasets regenerate.
GENERATOR_VERSION = 1
FORMAT_NAME = "mtmnv3-synth"
SPLITS = ("train", "val", "test")
#: Sequence index offsets: splits draw disjoint random streams (held-out sequences).
SPLIT_SEQUENCE_OFFSET = {"train": 0, "val": 1_000_000, "test": 2_000_000}
#: Default object-image pool of each split (val/test never reuse train images).
SPLIT_APPEARANCE_POOL = {"train": "train", "val": "val", "test": "test"}
#: Default sizes of the built-in dataset: small enough to generate in seconds.
DEFAULT_SPLIT_SEQUENCES = {"train": 16, "val": 8, "test": 8}
DEFAULT_NUM_FRAMES = 60
DEFAULT_IMAGE_SIZE = 192
DEFAULT_NUM_OBJECTS = 3
HASH_CHARS = 12
COCO_FILE = "annotations/coco.json"
CLS_FILE = "annotations/classification.txt"
MOT_DIR = "mot"
META_FILE = "meta.json"
PREVIEW_COLORS = ((255, 64, 64), (64, 255, 64), (64, 128, 255), (255, 255, 0), (255, 0, 255), (0, 255, 255))
PREVIEW_LABEL_HEIGHT = 18


def _write_sequence(args: tuple) -> dict:
    """Render one sequence into ``root/mot/<name>``; return its annotation records."""
    cfg, seq_index, seed, root, name = args
    seq_dir = Path(root) / MOT_DIR / name
    (seq_dir / "img1").mkdir(parents=True)
    (seq_dir / "gt").mkdir()
    frames, lines = [], []
    meta = None
    params = [cv2.IMWRITE_JPEG_QUALITY, cfg.jpeg_quality]
    for fr in generate_sequence(cfg, seq_index, seed):
        meta = fr.meta
        rel = f"{MOT_DIR}/{name}/img1/{fr.frame_id:06d}.jpg"
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(fr.image, cv2.COLOR_RGB2BGR), params)
        if not ok:
            raise RuntimeError(f"JPEG encoding failed for {rel}")
        buf.tofile(Path(root) / rel)
        lines += format_mot_rows(
            fr.frame_id, fr.instance_ids, fr.boxes, ~fr.ignore, fr.labels + 1, fr.visibility
        )
        frames.append(
            {
                "file_name": rel,
                "frame_id": fr.frame_id,
                "cls_label": fr.cls_label,
                "boxes": fr.boxes.tolist(),
                "labels": fr.labels.tolist(),
                "ids": fr.instance_ids.tolist(),
                "visibility": [round(float(v), 6) for v in fr.visibility],
                "ignore": fr.ignore.tolist(),
            }
        )
    with open(seq_dir / "gt" / "gt.txt", "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + ("\n" if lines else ""))
    assert meta is not None
    extra = tuple((k, str(v)) for k, v in meta.items() if k in ("domain", "appearance"))
    write_seqinfo(
        seq_dir / "seqinfo.ini",
        MotSequenceInfo(name, "img1", cfg.frame_rate, cfg.num_frames, cfg.width, cfg.height, ".jpg", extra),
    )
    return {"name": name, "seq_index": seq_index, "meta": meta, "frames": frames}


def _coco_from_records(
    records: list[dict], cfg: SceneConfig, classes: tuple[str, ...], cls_classes: tuple[str, ...]
) -> dict:
    videos, images, anns = [], [], []
    instance_ids: dict[tuple[int, int], int] = {}
    for video_id, rec in enumerate(records, 1):
        videos.append(
            {
                "id": video_id,
                "name": rec["name"],
                "width": cfg.width,
                "height": cfg.height,
                "frame_rate": cfg.frame_rate,
                "num_frames": cfg.num_frames,
                "seq_index": rec["seq_index"],
                **rec["meta"],
            }
        )
        for fr in rec["frames"]:
            img_id = len(images) + 1
            images.append(
                {
                    "id": img_id,
                    "file_name": fr["file_name"],
                    "width": cfg.width,
                    "height": cfg.height,
                    "video_id": video_id,
                    "frame_id": fr["frame_id"] - 1,
                    "mot_frame_id": fr["frame_id"],
                    "cls_label": fr["cls_label"],
                }
            )
            for box, lab, ident, vis, ign in zip(
                fr["boxes"], fr["labels"], fr["ids"], fr["visibility"], fr["ignore"], strict=True
            ):
                gid = instance_ids.setdefault((video_id, ident), len(instance_ids) + 1)
                x1, y1, x2, y2 = box
                anns.append(
                    {
                        "id": len(anns) + 1,
                        "image_id": img_id,
                        "category_id": lab + 1,
                        "bbox": [x1, y1, x2 - x1, y2 - y1],
                        "area": (x2 - x1) * (y2 - y1),
                        "iscrowd": int(ign),
                        "ignore": int(ign),
                        "instance_id": gid,
                        "mot_instance_id": ident,
                        "visibility": vis,
                    }
                )
    return {
        "info": {"description": "mtmnv3 procedural scenes", "version": str(GENERATOR_VERSION)},
        "licenses": [],
        "categories": [{"id": i + 1, "name": n, "supercategory": "object"} for i, n in enumerate(classes)],
        "cls_categories": [{"id": i, "name": n} for i, n in enumerate(cls_classes)],
        "videos": videos,
        "images": images,
        "annotations": anns,
    }


def write_synth_dataset(
    out: str | os.PathLike,
    cfg: SceneConfig,
    seed: int = 0,
    *,
    first_sequence: int = 0,
    name_prefix: str = "synth",
    workers: int = 1,
    progress: bool = True,
    overwrite: bool = False,
    extra_meta: dict | None = None,
) -> Path:
    """Generate a dataset into ``out`` (built in a temp folder, then renamed).

    Args:
        out: destination folder (must not exist unless ``overwrite``).
        cfg: scene knobs.
        seed: base seed.
        first_sequence: index of the first sequence's random stream.
        name_prefix: sequences are named ``<prefix>-0000``, ...
        workers: processes rendering sequences in parallel.
        progress: show a tqdm progress bar over frames.
        overwrite: replace an existing ``out``.
        extra_meta: extra entries for ``meta.json``.

    Returns:
        The dataset folder.
    """
    if not isinstance(cfg, SceneConfig):
        raise TypeError(f"cfg must be a SceneConfig, got {type(cfg).__name__}")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a positive int, got {workers!r}")
    out = Path(out)
    if out.exists() and not overwrite:
        raise FileExistsError(f"output folder already exists: {out}")
    cfg = cfg.replace(appearance=resolve_appearance(cfg.appearance))
    classes = AppearanceSource(cfg.appearance, cfg.appearance_pool).classes
    cls_classes = cls_class_names(classes)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        jobs = [
            (cfg, first_sequence + i, seed, os.fspath(tmp), f"{name_prefix}-{i:04d}")
            for i in range(cfg.num_sequences)
        ]
        records = _run_jobs(jobs, workers, progress, cfg.num_frames)
        coco = _coco_from_records(records, cfg, classes, cls_classes)
        atomic_write_json(tmp / COCO_FILE, coco, indent=None)
        with atomic_open(tmp / CLS_FILE, "w", encoding="utf-8") as f:
            for rec in records:
                f.writelines(f"{fr['file_name']} {fr['cls_label']}\n" for fr in rec["frames"])
        meta = {
            "format": FORMAT_NAME,
            "generator_version": GENERATOR_VERSION,
            "seed": seed,
            "first_sequence": first_sequence,
            "config": cfg.to_dict(),
            "classes": list(classes),
            "cls_classes": list(cls_classes),
            "sequences": [{"name": r["name"], "seq_index": r["seq_index"], **r["meta"]} for r in records],
            "num_images": len(coco["images"]),
            "num_annotations": len(coco["annotations"]),
            "files": {"coco": COCO_FILE, "classification": CLS_FILE, "mot": MOT_DIR},
            **(extra_meta or {}),
        }
        atomic_write_json(tmp / META_FILE, meta)
        _move_into_place(tmp, out, overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _run_jobs(jobs: list[tuple], workers: int, progress: bool, frames_per_job: int) -> list[dict]:
    from tqdm import tqdm

    bar = tqdm(
        total=len(jobs) * frames_per_job,
        unit="frame",
        disable=not progress,
        desc="generating synthetic scenes",
        mininterval=0.5
        if sys.stderr.isatty()
        else 30.0,  # a log file gets a line every 30 s, not every frame
    )
    try:
        if workers == 1 or len(jobs) == 1:
            records = []
            for job in jobs:
                records.append(_write_sequence(job))
                bar.update(frames_per_job)
            return records
        with ProcessPoolExecutor(max_workers=min(workers, len(jobs))) as pool:
            futures = [pool.submit(_write_sequence, job) for job in jobs]
            records = []
            for fut in futures:
                records.append(fut.result())
                bar.update(frames_per_job)
            return records
    finally:
        bar.close()


def _move_into_place(tmp: Path, out: Path, overwrite: bool) -> None:
    if overwrite and out.exists():
        trash = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:8]}"
        os.replace(out, trash)
        os.replace(tmp, out)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.rename(tmp, out)


def _knob_hash(payload: dict) -> str:
    text = json.dumps(payload, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:HASH_CHARS]


def ensure_synth_dataset(
    root: str | os.PathLike, split: str = "train", seed: int = 0, progress: bool = False, **knobs
) -> Path:
    """Return the folder of a synthetic split, generating it first if absent.

    The folder is ``root/<split>-<hash of the knobs>``: changing any knob (or
    the generator version, or whether Fashion-MNIST is installed under
    ``appearance='auto'``) makes a new folder. Generation happens in a temp
    folder that is renamed into place, so a crash or a concurrent generator
    never leaves a half-written split. Splits use disjoint sequence random
    streams and, by default, disjoint object-image pools.

    Args:
        root: cache folder.
        split: ``'train'``, ``'val'`` or ``'test'``.
        seed: base seed.
        progress: show a progress bar while generating.
        **knobs: :class:`SceneConfig` fields.

    Returns:
        The dataset folder (layout of :func:`write_synth_dataset`).
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    knobs.setdefault("appearance_pool", SPLIT_APPEARANCE_POOL[split])
    cfg = SceneConfig(**knobs)
    cfg = cfg.replace(appearance=resolve_appearance(cfg.appearance))
    key = _knob_hash({"config": cfg.to_dict(), "seed": seed, "split": split, "version": GENERATOR_VERSION})
    root = Path(root)
    out = root / f"{split}-{key}"
    if (out / META_FILE).is_file():
        return out
    if out.exists():  # a folder without meta.json is not ours to trust: rebuild it
        shutil.rmtree(out)
    try:
        write_synth_dataset(
            out,
            cfg,
            seed,
            first_sequence=SPLIT_SEQUENCE_OFFSET[split],
            name_prefix=split,
            progress=progress,
            extra_meta={"split": split, "knob_hash": key},
        )
    except OSError:
        # Another process renamed its copy into place first: use that one.
        if not (out / META_FILE).is_file():
            raise
    return out


@DATASETS.register_module()
class SynthMultiTaskDataset(MultiTaskDataset):
    """The built-in default data: a cached synthetic split read back from disk.

    Calls :func:`ensure_synth_dataset` and reads the result through
    :class:`MultiTaskDataset`, so samples carry classification, detection
    and tracking labels plus the sequence's scene knobs.

    Args:
        data_root: cache folder of generated splits.
        split: ``'train'``, ``'val'`` or ``'test'``.
        num_sequences: sequences (default 16 for train, 8 for val/test).
        num_frames: frames per sequence (default 60).
        image_size: frame size in pixels (default 192).
        num_objects: objects at once (default 3).
        seed: base seed.
        scene: other :class:`SceneConfig` knobs (``domains``, ``noise_std``, ...).
        pipeline: transforms.
        progress: show a progress bar (frames, rate, ETA) when the split is generated.
        **kwargs: forwarded to :class:`MultiTaskDataset`.
    """

    #: read by :func:`mtmnv3.data.provenance.describe_datasets` (checkpoints record what a model saw)
    synthetic = True

    def __init__(
        self,
        data_root: str = "data/synth",
        split: str = "train",
        num_sequences: int | None = None,
        num_frames: int = DEFAULT_NUM_FRAMES,
        image_size: int | tuple[int, int] = DEFAULT_IMAGE_SIZE,
        num_objects: int = DEFAULT_NUM_OBJECTS,
        seed: int = 0,
        scene: dict | None = None,
        pipeline: list | None = None,
        progress: bool = True,
        **kwargs,
    ) -> None:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        knobs = dict(scene or {})
        knobs.update(
            num_sequences=DEFAULT_SPLIT_SEQUENCES[split] if num_sequences is None else num_sequences,
            num_frames=num_frames,
            image_size=image_size,
            num_objects=num_objects,
        )
        self.split = split
        # Absolute, so mmengine does not join data_root onto an already rooted ann_file.
        self.synth_dir = ensure_synth_dataset(
            data_root, split, seed=seed, progress=progress, **knobs
        ).resolve()
        super().__init__(
            ann_file=os.fspath(self.synth_dir / COCO_FILE),
            data_root=os.fspath(self.synth_dir),
            pipeline=pipeline,
            **kwargs,
        )


def render_preview(
    dataset_dir: str | os.PathLike,
    out_png: str | os.PathLike,
    num_sequences: int = 3,
    frames_per_sequence: int = 4,
    draw: Callable | None = None,
) -> Path:
    """Draw a grid of frames read back from a written dataset, with boxes and ids.

    Rows are sequences, columns frames evenly spread over the sequence. Each
    box is labelled ``<id>:<class>`` (dashed grey when ignored); the caption
    shows the frame's classification label and the sequence's domain.

    Returns:
        The PNG path (written atomically).
    """
    if num_sequences < 1 or frames_per_sequence < 1:
        raise ValueError(
            f"need at least one sequence and frame, got {num_sequences} and {frames_per_sequence}"
        )
    ds_dir = Path(dataset_dir)
    ds = MultiTaskDataset(
        ann_file=os.fspath(ds_dir / COCO_FILE), data_root=os.fspath(ds_dir), serialize_data=False
    )
    classes, cls_classes = ds.metainfo["classes"], ds.metainfo["cls_classes"]
    by_video: dict[int, list[int]] = {}
    for i, info in enumerate(ds.data_list):
        by_video.setdefault(info["video_id"], []).append(i)
    rows = []
    for vid in sorted(by_video)[:num_sequences]:
        idxs = by_video[vid]
        picks = np.linspace(0, len(idxs) - 1, frames_per_sequence).round().astype(int)
        tiles = [_preview_tile(ds[idxs[p]], classes, cls_classes) for p in picks]
        rows.append(np.concatenate(tiles, 1))
    width = max(r.shape[1] for r in rows)
    grid = np.concatenate([np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0))) for r in rows], 0)
    out_png = Path(out_png)
    ok, buf = cv2.imencode(".png", cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))
    if not ok:
        raise RuntimeError(f"PNG encoding failed for {out_png}")
    with atomic_open(out_png, "wb") as f:
        f.write(buf.tobytes())
    return out_png


def _preview_tile(s: dict, classes, cls_classes) -> np.ndarray:
    img = np.ascontiguousarray(s["img"].copy())
    for box, lab, ident, ign in zip(
        s["gt_bboxes"], s["gt_labels"], s["gt_instance_ids"], s["gt_ignore"], strict=True
    ):
        color = (160, 160, 160) if ign else PREVIEW_COLORS[int(ident) % len(PREVIEW_COLORS)]
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        cv2.rectangle(img, (x1, y1), (x2 - 1, y2 - 1), color, 1)
        cv2.putText(
            img,
            f"{int(ident)}:{classes[lab]}",
            (x1 + 2, max(y1 + 10, 10)),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.35,
            color,
            1,
            cv2.LINE_AA,
        )
    caption = np.full((PREVIEW_LABEL_HEIGHT, img.shape[1], 3), 255, np.uint8)
    text = f"f{s['frame_id']} cls={cls_classes[s['gt_cls_label']]} [{s.get('domain', '')}]"
    cv2.putText(caption, text, (3, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.38, (0, 0, 0), 1, cv2.LINE_AA)
    tile = np.concatenate([img, caption], 0)
    return np.pad(tile, ((1, 1), (1, 1), (0, 0)), constant_values=255)
