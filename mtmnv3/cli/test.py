"""``mtmnv3 test``: evaluate a checkpoint on a config's test split and print the per-task metrics table.

``--track`` also runs the tracker (detection + embedding heads, ByteTrack-style
association) over MOTChallenge sequences -- the config's test split (the
built-in data's, or a ``MOTChallengeDataset``'s sequences and frames), or
``--mot-dir`` -- writes one MOTChallenge result file per sequence
(``--out-dir DIR``: ``DIR/<seq>.txt``, the submission layout, boxes in the
frames' pixels) and, where the sequences have ground truth, reports MOTA,
IDF1, HOTA and ID switches (a MOT17 test split has none: the files are
written and nothing is scored).

``--splits`` evaluates on several held-out splits of the built-in data (the
test split generated again with each seed) and prints every split's metrics
and their mean +- std: one 96-sequence split shows only ~100 distinct main
objects, so its top-1 moves by several points from split to split.

``--backend onnxruntime|executorch|openvino`` measures the deployed file, not
PyTorch: the model is exported for that runtime (``--int8``: with the
runtime's own quantizer), checked against PyTorch, and its raw outputs go
through the model's own decode and the config's metrics; ``--model-file``
evaluates a file ``mtmnv3 export`` wrote instead (refused when its config
hash, heads or input size do not fit the config).

With ``--work-dir`` the run also leaves ``WORK_DIR/eval_result.json`` (config,
checkpoint, the command and the metrics), which ``mtmnv3 summary
--update-metafile`` reads into ``configs/metafile.yml``.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import tempfile
from collections.abc import Sequence

from mmengine.runner import Runner

from mtmnv3.cli._common import command_line, new_parser, report
from mtmnv3.core.fileio import atomic_write_json
from mtmnv3.engine import (
    add_runner_args,
    build_runner,
    check_split_seeds,
    close_distributed,
    input_size,
    load_config,
    load_model_checkpoint,
)
from mtmnv3.runtime.frame_runner import TorchFrameRunner
from mtmnv3.runtime.sessions import BACKENDS, check_backend

__all__ = ["add_parser", "run", "main", "EVAL_RESULT", "EVAL_RESULT_FORMAT"]

#: The provenance record a ``--work-dir`` run leaves (read by ``mtmnv3 summary``).
EVAL_RESULT = "eval_result.json"
EVAL_RESULT_FORMAT = "mtmnv3.EvalResult"

EXAMPLE = """\
mtmnv3 test configs/mtmnv3_small_3task_synth.py work_dirs/demo/model.pth --track --work-dir work_dirs/eval
mtmnv3 test configs/mtmnv3_small_detemb_mot17.py mot17.pth --track --out-dir submit --cfg-options test_dataloader.dataset.split=test test_dataloader.dataset.half=None
mtmnv3 test configs/mtmnv3_small_3task_synth.py work_dirs/demo/model.pth --splits 0 1 2 3
mtmnv3 test configs/mtmnv3_small_3task_synth.py work_dirs/demo/model.pth --backend openvino --int8"""


def add_parser(subparsers: argparse._SubParsersAction | None = None) -> argparse.ArgumentParser:
    """The ``test`` parser (under ``subparsers``, or standalone when None)."""
    p = new_parser(
        "test", "evaluate a checkpoint: per-task metrics (and MOT with --track)", EXAMPLE, subparsers
    )
    p.add_argument("config")
    p.add_argument("checkpoint")
    p.add_argument("--work-dir", help="where test logs go (default: a temporary folder)")
    p.add_argument("--out-json", help="also write the metrics as JSON here")
    p.add_argument(
        "--track", action="store_true", help="also track MOTChallenge sequences and report MOT metrics"
    )
    p.add_argument(
        "--mot-dir", help="MOTChallenge split folder (<seq>/img1, gt/gt.txt); default: the test split's"
    )
    p.add_argument(
        "--track-size", type=int, help="tracking input size (default: the test split's image size)"
    )
    p.add_argument("--iou-only", action="store_true", help="associate by IoU only (no embeddings)")
    p.add_argument(
        "--backend",
        choices=BACKENDS,
        default="torch",
        help="evaluate on this runtime's deployed file (default torch: the PyTorch model)",
    )
    p.add_argument(
        "--int8", action="store_true", help="with --backend: an int8 file from the runtime's quantizer"
    )
    p.add_argument("--model-file", help="with --backend: evaluate this deployed file (from mtmnv3 export)")
    p.add_argument("--threads", type=int, default=2, help="runtime threads with --backend (default 2)")
    p.add_argument(
        "--input-size",
        type=_parse_wxh,
        metavar="WxH",
        help="with --backend: the deployed file's input shape, e.g. 320x192 (default: the config's test "
        "size); evaluation frames are letterboxed into it, and a --model-file must have it",
    )
    p.add_argument(
        "--out-dir",
        "--results-dir",
        dest="results_dir",
        help="where MOT result files go, one <seq>.txt per sequence (default: WORK_DIR/mot_results)",
    )
    p.add_argument(
        "--splits",
        nargs="+",
        type=int,
        metavar="SEED",
        help="evaluate on the test split generated with each of these seeds (built-in data) and report mean +- std",
    )
    add_runner_args(p)
    return p


def _parse_wxh(text: str) -> tuple[int, int]:
    from mtmnv3.cli.export import parse_wxh

    return parse_wxh(text)


def run(args: argparse.Namespace) -> int:
    """Evaluate; 0 on success, 2 on bad input."""
    os.environ.setdefault("LOCAL_RANK", str(args.local_rank))
    try:
        cfg = load_config(args.config, args.cfg_options)
        if not os.path.isfile(args.checkpoint):
            raise FileNotFoundError(f"checkpoint not found: {args.checkpoint}")
        cfg.work_dir = args.work_dir or tempfile.mkdtemp(prefix="mtmnv3_test_")
        cfg.launcher = args.launcher
        cfg.load_from = None
        for key in ("train_dataloader", "train_cfg", "optim_wrapper", "param_scheduler"):
            cfg.pop(key, None)
        if args.splits:
            check_split_seeds(cfg, args.splits, "--splits")
        if args.backend == "torch" and (args.int8 or args.model_file):
            raise ValueError("--int8 and --model-file evaluate a deployed file; give --backend too")
        if args.model_file is not None and not os.path.isfile(args.model_file):
            raise FileNotFoundError(f"model file not found: {args.model_file}")
        if args.backend != "torch":
            check_backend(args.backend)
        elif args.input_size is not None:
            raise ValueError("--input-size is the deployed file's shape; give --backend too")
    except (FileNotFoundError, KeyError, ValueError, TypeError, ImportError) as e:
        return report(e)
    if not args.splits:
        metrics = _evaluate(args, cfg)
        if metrics is None:
            return 2
        out: dict = {k: float(v) for k, v in metrics.items()}
    else:
        from mtmnv3.evaluation import format_splits_table, summarize_splits

        per_split = {}
        for seed in args.splits:
            split_cfg = copy.deepcopy(cfg)
            split_cfg.test_dataloader.dataset.seed = seed
            metrics = _evaluate(args, split_cfg, results_subdir=f"split_seed{seed}")
            if metrics is None:
                return 2
            per_split[seed] = {k: float(v) for k, v in metrics.items()}
        print(f"held-out splits (test split seeds {', '.join(map(str, args.splits))}):")
        print(format_splits_table(per_split))
        out = {"splits": {str(k): v for k, v in per_split.items()}, "summary": summarize_splits(per_split)}
    if args.out_json:
        atomic_write_json(args.out_json, out)
    if args.work_dir:
        record = dict(
            format=EVAL_RESULT_FORMAT,
            config=os.fspath(args.config),
            checkpoint=os.fspath(args.checkpoint),
            command=getattr(args, "command_line", None) or f"mtmnv3 test {args.config} {args.checkpoint}",
            metrics=out,
        )
        atomic_write_json(os.path.join(args.work_dir, EVAL_RESULT), record)
    close_distributed()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``mtmnv3 test`` with ``argv`` (default ``sys.argv[1:]``)."""
    args = add_parser().parse_args(argv)
    args.command_line = command_line("test", argv)
    return run(args)


def _evaluate(args: argparse.Namespace, cfg, results_subdir: str | None = None) -> dict | None:
    """Test (and track, with ``--track``) one split; ``None`` after printing an error."""
    if args.backend != "torch":
        return _evaluate_deployed(args, cfg, results_subdir)
    try:
        runner = build_runner(cfg)
        model = getattr(runner.model, "module", runner.model)  # unwrap DDP
        load_model_checkpoint(model, args.checkpoint)
    except (FileNotFoundError, KeyError, ValueError, TypeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return None
    try:
        dataset = runner.test_dataloader.dataset
        labelled = _has_ground_truth(dataset)
        if not labelled and not args.track:
            raise ValueError(
                "the test split has no ground truth: nothing to evaluate; give --track --out-dir DIR "
                "to write MOTChallenge result files"
            )
    except (FileNotFoundError, KeyError, ValueError, TypeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return None
    if labelled:
        metrics = dict(runner.test())
    else:
        print("the test split has no ground truth: per-task metrics skipped")
        metrics = {}
    if args.track:
        try:
            mot_source, protocol = _mot_source(args, dataset)
            frame_runner = TorchFrameRunner(model, _track_size(args, cfg))
            metrics.update(_track(args, cfg, frame_runner, mot_source, results_subdir, protocol))
        except (FileNotFoundError, ValueError) as e:
            print(f"error: {e}", file=sys.stderr)
            return None
    return metrics


def _evaluate_deployed(args: argparse.Namespace, cfg, results_subdir: str | None = None) -> dict | None:
    """The metrics of the deployed file: exported here (or ``--model-file``), run on its runtime."""
    from mmengine.registry import init_default_scope

    from mtmnv3.apis import init_model
    from mtmnv3.cli._deploy import (
        DeployError,
        check_model_file,
        deployed_raw_fn,
        export_deployed,
        with_input_shape,
    )
    from mtmnv3.evaluation import format_metrics_table
    from mtmnv3.runtime.frame_runner import EXPORT_SUFFIXES, DeployedFrameRunner
    from mtmnv3.studies.quantization import evaluate_raw_fn

    fmt = {"onnxruntime": "onnx", "executorch": "executorch", "openvino": "openvino"}[args.backend]
    size: int | tuple[int, int] = input_size(cfg.test_dataloader.dataset)
    if (
        args.input_size is not None
    ):  # (width, height) -> the file's (height, width); frames letterboxed into it
        size = (args.input_size[1], args.input_size[0])
        cfg = with_input_shape(cfg, size)
    try:
        init_default_scope(cfg.get("default_scope", "mtmnv3"))
        model = init_model(args.config, args.checkpoint, args.cfg_options)
        if args.model_file is not None:
            path = args.model_file
            asked = (
                "--input-size"
                if args.input_size is not None
                else "the config's test size (or give --input-size)"
            )
            meta = check_model_file(path, args.config, model, size, asked_by=asked)
        else:
            precision = "int8" if args.int8 else "fp32"
            path = os.path.join(cfg.work_dir, "deploy", f"model_{precision}{EXPORT_SUFFIXES[args.backend]}")
            meta = export_deployed(
                model, fmt, path, args.config, cfg, size, int8=args.int8, threads=args.threads
            )
        dataset = Runner.build_dataloader(dict(cfg.test_dataloader, num_workers=0)).dataset
        labelled = _has_ground_truth(dataset)
        if not labelled and not args.track:
            raise ValueError(
                "the test split has no ground truth: nothing to evaluate; give --track --out-dir DIR "
                "to write MOTChallenge result files"
            )
        metrics = {}
        if labelled:
            raw_fn, _ = deployed_raw_fn(path, args.threads)
            metrics = evaluate_raw_fn(raw_fn, model, meta["outputs"], cfg, split="test", batch_size=1)
            print(f"{meta.get('precision', 'fp32')} {args.backend} file {path}:")
            print(format_metrics_table(metrics))
        if args.track:
            frame_runner = DeployedFrameRunner(path, model, threads=args.threads)
            mot_source, protocol = _mot_source(args, dataset)
            metrics.update(_track(args, cfg, frame_runner, mot_source, results_subdir, protocol))
    except (FileNotFoundError, KeyError, ValueError, TypeError, ImportError, DeployError) as e:
        print(f"error: {e}", file=sys.stderr)
        return None
    return metrics


def _parts(dataset) -> list:
    """A ``ConcatDataset``'s parts, else the dataset itself."""
    return list(getattr(dataset, "datasets", None) or [dataset])


def _mot_dataset(dataset):
    """The ``MOTChallengeDataset`` (part) of the test split, or None."""
    from mtmnv3.data.motchallenge import MOTChallengeDataset

    return next((d for d in _parts(dataset) if isinstance(d, MOTChallengeDataset)), None)


def _has_ground_truth(dataset) -> bool:
    """False when every part of the test split is MOTChallenge sequences without ``gt/gt.txt``."""
    return any(getattr(d, "has_gt", True) for d in _parts(dataset))


def _mot_source(args: argparse.Namespace, dataset) -> tuple:
    """``(what to track, evaluation protocol)``: ``--mot-dir``, the test split's MOTChallenge
    sequences (their frames, e.g. a validation half), or the built-in test split's folder."""
    mot = _mot_dataset(dataset)
    protocol = getattr(mot, "protocol", None)
    if args.mot_dir is not None:
        # one copy of each MOT17 sequence, as the config's dataset reads them
        if mot is not None and mot.prefer_detector is not None:
            from mtmnv3.data.motchallenge import mot_sequences

            return mot_sequences(args.mot_dir, prefer_detector=mot.prefer_detector), protocol
        return args.mot_dir, protocol
    if mot is not None:
        return mot.sequences, protocol
    synth_dir = next((d.synth_dir for d in _parts(dataset) if getattr(d, "synth_dir", None)), None)
    if synth_dir is None:
        raise ValueError(
            "the test split is neither the built-in synthetic data nor a MOTChallengeDataset; give --mot-dir"
        )
    return os.path.join(synth_dir, "mot"), None


def _track_size(args: argparse.Namespace, cfg) -> int:
    """``--track-size``, or the input size of the test split's tracking data (its MOTChallenge part)."""
    if args.track_size:
        return int(args.track_size)
    dataset = cfg.test_dataloader.dataset
    parts = dataset.get("datasets") if dataset.get("type") == "ConcatDataset" else None
    if parts:
        dataset = next((d for d in parts if d.get("type") == "MOTChallengeDataset"), parts[0])
    return int(input_size(dataset))


def _track(
    args: argparse.Namespace,
    cfg,
    frame_runner,
    mot_source,
    results_subdir: str | None = None,
    protocol: str | None = None,
) -> dict:
    """Result files, and MOTA, IDF1, HOTA, ... where there is ground truth, of ``frame_runner``
    plus the config's tracker over MOTChallenge sequences."""
    from mtmnv3.apis.inference import track_mot_sequences
    from mtmnv3.evaluation import format_metrics_table

    results_dir = args.results_dir or os.path.join(cfg.work_dir, "mot_results")
    if results_subdir:
        results_dir = os.path.join(results_dir, results_subdir)
    tracker_cfg = dict(
        cfg.get("tracker") or {}
    )  # its type too: a BoxMOT peer tracks when the config names one
    tracker_cfg["use_embeddings"] = not args.iou_only
    mot = track_mot_sequences(
        frame_runner,
        mot_source,
        results_dir,
        tracker_cfg,
        input_size=frame_runner.input_size,
        protocol=protocol,
    )
    if not mot:
        print(
            f"no ground truth: MOTChallenge result files written to {results_dir} "
            "(one <seq>.txt per sequence: the submission layout)"
        )
        return {}
    mot = {f"mot/{k}": float(v) for k, v in mot.items()}
    print(format_metrics_table(mot))
    print(f"MOT results written to {results_dir}")
    return mot
