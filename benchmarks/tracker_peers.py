"""Our tracker against BoxMOT's ByteTrack, OC-SORT and BoT-SORT on the same detections.

Detections (and embeddings) are computed once per frame and every tracker
runs on exactly the same ones, each with a fresh instance per sequence:

* ``EmbeddingTracker``: the config's tracker (its tuned thresholds), then
  the same with camera-motion compensation (``cmc=dict(method='sparse_flow',
  downscale=2)``, fed the frames), and both with the Kalman box state the
  config does not use (``kalman='xywh'``, BoT-SORT's, or ``'xyah'``);
* ``BoxMOTByteTrack``, ``BoxMOTOCSort``, ``BoxMOTBoTSORT``: BoxMOT 25.0.0
  behind our interface (``mtmnv3/tracking/peers.py``), given the config's
  score thresholds (``high_thr``, ``low_thr``; ``new_track_thr`` for
  BoT-SORT: they depend on the detector's scores) and otherwise BoxMOT's
  defaults; BoT-SORT gets our embeddings and the frames (its own CMC,
  ``--botsort-cmc``).

Sequences: held-out generated videos (unseen object images, the config's
test scene at ``--image-size``; ``--camera still,moving``: also seen by a
moving camera, a pan sweep plus shake) and every sequence of ``--mot-dir``
(a MOTChallenge split folder; ``--protocol mot17`` for MOT16/17).

Detections: the model of ``--config`` / ``--checkpoint`` (detection and
embedding heads), or with ``--gt-detections`` the ground truth with jitter
and dropped boxes (no model, no embeddings: every tracker associates by
motion and IoU, BoT-SORT without appearance).

Printed per set: MOTA, IDF1, HOTA, IDSW, and each tracker's own time per
frame (its ``update`` calls only, CMC included) as ms and as a ratio to our
tracker's (without CMC) in the same run: the thread's CPU time
(``time.thread_time``, which other processes competing for the cores do
not inflate; one thread by default), and the wall time beside it. The
trackers take turns frame by frame, in an order that rotates.

Usage: python benchmarks/tracker_peers.py [--config CONFIG] [--checkpoint weights/mtmnv3_small_3task_synth.pth]
           [--gt-detections [--jitter 0.03] [--drop 0.1]] [--mot-dir MOT_SPLIT [--protocol mot17] [--max-frames N]]
           [--sequences 4] [--frames 150] [--image-size 320] [--camera still,moving] [--seed 2024]
           [--botsort-cmc sof] [--threads 1]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CHECKPOINT = ROOT / "weights/mtmnv3_small_3task_synth.pth"
#: Camera sets of the generated videos (``--camera``).
CAMERAS = ("still", "moving")
#: The moving camera's knobs (``SceneConfig``) of the ``moving`` set.
MOVING_CAMERA = dict(camera_pan=0.0, camera_speed=4.0, camera_period=60, camera_shake=6.0)
#: Our camera-motion compensation in the ``+ CMC`` row.
OUR_CMC = dict(method="sparse_flow", downscale=2)


@dataclass
class Sequence:
    """One sequence's cached per-frame detections, where its frames are, and its ground truth."""

    name: str
    frame_ids: list[int]
    dets: list[tuple]  # (boxes, scores, labels, embeddings or None) per frame
    frame_paths: list[Path]
    frame_rate: float
    gt: np.ndarray | None

    def frames(self) -> Iterator[np.ndarray]:
        """The RGB frames, read one at a time."""
        import cv2

        for path in self.frame_paths:
            bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if bgr is None:
                raise FileNotFoundError(f"cannot read frame {path}")
            yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def trackers(tcfg: dict, botsort_cmc: str | None, with_embeddings: bool) -> dict[str, dict]:
    """The tracker configs compared, by row name (ours first: the reference of the time ratios)."""
    shared = {k: tcfg[k] for k in ("high_thr", "low_thr") if k in tcfg}
    other = (
        "xyah" if tcfg.get("kalman", "xyah") == "xywh" else "xywh"
    )  # the Kalman state the config does not use
    return {
        "EmbeddingTracker (config)": dict(tcfg),
        "EmbeddingTracker (config) + CMC": {**tcfg, "cmc": OUR_CMC},
        f"EmbeddingTracker (kalman={other})": {**tcfg, "kalman": other},
        f"EmbeddingTracker (kalman={other}) + CMC": {**tcfg, "kalman": other, "cmc": OUR_CMC},
        "BoxMOT ByteTrack": {"type": "BoxMOTByteTrack", **shared},
        "BoxMOT OC-SORT": {"type": "BoxMOTOCSort", **shared},
        "BoxMOT BoT-SORT": {
            "type": "BoxMOTBoTSORT",
            **shared,
            **({"new_track_thr": tcfg["new_track_thr"]} if "new_track_thr" in tcfg else {}),
            "use_embeddings": with_embeddings,
            "cmc_method": botsort_cmc,
        },
    }


def model_sequences(args, root: Path) -> list[Sequence]:
    """Detections and embeddings of the model, once per frame (``detect_mot_sequences``)."""
    from mtmnv3.apis import init_model
    from mtmnv3.apis.inference import detect_mot_sequences
    from mtmnv3.data.mot import read_seqinfo
    from mtmnv3.data.mot_io import load_mot_txt
    from mtmnv3.engine import input_size, load_config
    from mtmnv3.runtime.frame_runner import TorchFrameRunner

    cfg = load_config(args.config)
    model = init_model(args.config, args.checkpoint)
    runner = TorchFrameRunner(model, input_size(cfg.test_dataloader.dataset))
    dets = detect_mot_sequences(runner, root, embeddings=True, max_frames=args.max_frames, progress=False)
    out = []
    for name, seq in dets.items():
        info = read_seqinfo(seq.seq_dir / "seqinfo.ini")
        out.append(
            Sequence(
                name,
                list(seq.frame_ids),
                [(p.bboxes, p.scores, p.labels, p.embeddings) for p in seq.predictions],
                [info.frame_path(seq.seq_dir, f) for f in seq.frame_ids],
                seq.frame_rate,
                load_mot_txt(seq.gt_file) if seq.gt_file.is_file() else None,
            )
        )
    return out


def gt_sequences(args, root: Path) -> list[Sequence]:
    """Detections made from the ground truth: jittered boxes, ``--drop`` of them dropped, no embeddings."""
    from mtmnv3.data.mot import mot_to_xyxy
    from mtmnv3.data.mot_io import load_mot_txt
    from mtmnv3.data.motchallenge import mot_sequences
    from mtmnv3.data.synth import noisy_detections

    out = []
    for k, seq in enumerate(mot_sequences(root)):
        gt_file = seq.seq_dir / "gt" / "gt.txt"
        if not gt_file.is_file():
            print(f"note: {seq.name} has no gt/gt.txt: skipped (--gt-detections needs ground truth)")
            continue
        gt = load_mot_txt(gt_file)
        frames = list(seq.frames)[: args.max_frames]
        rng = np.random.default_rng([args.seed, k])
        dets = []
        for f in frames:
            rows = gt[(gt[:, 0] == f) & (gt[:, 6] != 0)]
            if args.protocol == "mot17" and rows.shape[1] > 7:
                rows = rows[rows[:, 7] == 1]  # pedestrians
            boxes, scores, kept = noisy_detections(mot_to_xyxy(rows[:, 2:6]), rng, args.jitter, args.drop)
            dets.append((boxes, scores, np.zeros(len(kept), np.int64), None))
        out.append(
            Sequence(
                seq.name,
                frames,
                dets,
                [seq.info.frame_path(seq.seq_dir, f) for f in frames],
                float(seq.info.frame_rate or 30),
                gt,
            )
        )
    return out


def run(seqs: list[Sequence], configs: dict[str, dict], protocol: str | None) -> list[list]:
    """Every tracker over every sequence: metrics and its own time per frame (update calls only)."""
    from mtmnv3.evaluation import evaluate_mot
    from mtmnv3.tracking import build_tracker, tracks_to_mot_rows

    results: dict[str, dict] = {name: {} for name in configs}
    spent = dict.fromkeys(configs, 0.0)  # the thread's CPU seconds
    spent_wall = dict.fromkeys(configs, 0.0)
    count = 0
    for seq in seqs:
        built = {name: build_tracker({**cfg, "frame_rate": seq.frame_rate}) for name, cfg in configs.items()}
        wants_frames = {name: tracker.uses_frames for name, tracker in built.items()}
        rows: dict[str, list] = {name: [] for name in configs}
        images = seq.frames() if any(wants_frames.values()) else None
        for k, (fid, (boxes, scores, labels, emb)) in enumerate(zip(seq.frame_ids, seq.dets, strict=True)):
            image = next(images) if images is not None else None
            order = list(configs)
            order = order[k % len(order) :] + order[: k % len(order)]  # rotate: drift hits all alike
            for name in order:
                t0, w0 = time.thread_time(), time.perf_counter()
                out = built[name].update(
                    boxes, scores, labels, emb, frame_id=fid, frame=image if wants_frames[name] else None
                )
                spent[name] += time.thread_time() - t0
                spent_wall[name] += time.perf_counter() - w0
                rows[name].append(tracks_to_mot_rows(fid, out))
            count += 1
        for name in configs:
            results[name][seq.name] = np.concatenate(rows[name])
    scored = [s for s in seqs if s.gt is not None]
    gt = {}
    for s in scored:
        g = s.gt
        gt[s.name] = g[(g[:, 0] >= s.frame_ids[0]) & (g[:, 0] <= s.frame_ids[-1])]
    ref = next(iter(configs))
    table = []
    for name in configs:
        ms = spent[name] / max(count, 1) * 1e3
        wall_ms = spent_wall[name] / max(count, 1) * 1e3
        if gt:
            m = evaluate_mot(gt, {s: results[name][s] for s in gt}, protocol=protocol)
            metrics = [f"{m['MOTA']:.3f}", f"{m['IDF1']:.3f}", f"{m['HOTA']:.3f}", m["IDSW"]]
        else:
            metrics = ["-", "-", "-", "-"]
        table.append(
            [name, *metrics, f"{ms:.2f}", f"{ms / (spent[ref] / max(count, 1) * 1e3):.2f}", f"{wall_ms:.2f}"]
        )
    return table


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default=str(ROOT / "configs/mtmnv3_small_3task_synth.py"))
    p.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT))
    p.add_argument("--gt-detections", action="store_true", help="detections from the ground truth (no model)")
    p.add_argument(
        "--jitter", type=float, default=0.03, help="--gt-detections: side noise, fraction of the box"
    )
    p.add_argument("--drop", type=float, default=0.1, help="--gt-detections: share of boxes dropped")
    p.add_argument("--mot-dir", action="append", default=[], help="a MOTChallenge split folder (repeatable)")
    p.add_argument("--protocol", default=None, help="MOT evaluation protocol of --mot-dir ('mot17')")
    p.add_argument("--max-frames", type=int, default=None, help="first frames of each --mot-dir sequence")
    p.add_argument("--sequences", type=int, default=4, help="generated held-out sequences per camera set")
    p.add_argument("--frames", type=int, default=150)
    p.add_argument("--image-size", type=int, default=320)
    p.add_argument(
        "--camera", default=",".join(CAMERAS), help=f"generated sets: subset of {','.join(CAMERAS)}"
    )
    p.add_argument("--seed", type=int, default=2024, help="generator seed of the held-out sequences")
    p.add_argument("--botsort-cmc", default="sof", help="BoT-SORT's CMC (BoxMOT: sof, ecc, orb, sift; none)")
    p.add_argument("--threads", type=int, default=1, help="torch and OpenCV threads")
    p.add_argument(
        "--variant",
        action="append",
        nargs="+",
        default=[],
        metavar="NAME [KEY=VALUE ...]",
        help="another row: the config's tracker with these options, read as --cfg-options values "
        "(repeatable), e.g. --variant 'min fusion' fusion=min",
    )
    args = p.parse_args(argv)
    cameras = [c for c in args.camera.split(",") if c]
    if any(c not in CAMERAS for c in cameras):
        p.error(f"--camera must be a comma-separated subset of {','.join(CAMERAS)}, got {args.camera!r}")
    if args.sequences < 0 or args.frames < 2:
        p.error("--sequences must be >= 0 and --frames >= 2")
    if not args.gt_detections and not Path(args.checkpoint).is_file():
        p.error(
            f"checkpoint not found: {args.checkpoint} (train one, e.g. make demo writes work_dirs/demo/model.pth, "
            "or run with --gt-detections, which needs no model)"
        )

    import cv2
    import torch

    from mtmnv3.core.profiling import format_table
    from mtmnv3.data import SceneConfig, write_synth_dataset
    from mtmnv3.engine import load_config

    cv2.setNumThreads(args.threads)
    torch.set_num_threads(args.threads)
    full_cfg = load_config(args.config)
    tcfg = dict(full_cfg.get("tracker") or {"type": "EmbeddingTracker"})
    tcfg["type"] = "EmbeddingTracker"
    scene = dict(full_cfg.test_dataloader.dataset.get("scene") or {})
    botsort_cmc = None if args.botsort_cmc.lower() == "none" else args.botsort_cmc
    configs = trackers(tcfg, botsort_cmc, with_embeddings=not args.gt_detections)
    from mtmnv3.cli.live_demo import parse_cfg_options

    for name, *options in args.variant:
        configs[f"EmbeddingTracker ({name})"] = {**tcfg, **parse_cfg_options(options)}
    source = f"ground truth, jitter {args.jitter:g}, {args.drop:.0%} dropped, no embeddings"
    if not args.gt_detections:
        source = f"model {args.checkpoint} ({Path(args.config).name}), detections + embeddings"
    print(f"Detections: {source}; {args.threads} thread(s); BoT-SORT CMC: {botsort_cmc}")
    with tempfile.TemporaryDirectory() as tmp:
        sets: list[tuple[str, Path]] = []
        for camera in cameras if args.sequences else ():
            cfg = SceneConfig(
                num_sequences=args.sequences,
                num_frames=args.frames,
                image_size=args.image_size,
                appearance_pool="test",
                **{**scene, **(MOVING_CAMERA if camera == "moving" else {})},
            )
            data = write_synth_dataset(
                Path(tmp) / camera, cfg, seed=args.seed, name_prefix=f"heldout_{camera}", progress=False
            )
            sets.append(
                (
                    f"generated, {camera} camera ({args.sequences} x {args.frames} frames, "
                    f"{args.image_size} px, seed {args.seed})",
                    data / "mot",
                )
            )
        sets += [(f"MOTChallenge {d}", Path(d)) for d in args.mot_dir]
        for label, root in sets:
            seqs = gt_sequences(args, root) if args.gt_detections else model_sequences(args, root)
            if not seqs:
                print(f"\n{label}: no sequences to track")
                continue
            table = run(seqs, configs, args.protocol if label.startswith("MOTChallenge") else None)
            frames = sum(len(s.frame_ids) for s in seqs)
            print(f"\n{label}: {len(seqs)} sequences, {frames} frames")
            print(
                format_table(
                    [
                        "tracker",
                        "MOTA",
                        "IDF1",
                        "HOTA",
                        "IDSW",
                        "CPU ms/frame",
                        "CPU time / ours",
                        "wall ms/frame",
                    ],
                    table,
                )
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
