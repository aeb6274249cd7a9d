"""``mtmnv3 scorecard``: the trunks side by side at one training budget, one row per trunk.

For each config (default: the MobileNetV3-Small 3-task config and every
``configs/successors/*.py``), in stages whose results are cached under
``WORK_DIR/trunks/<config stem>/`` (a rerun reuses every stage whose
checkpoint has not changed):

1. train: ``--seeds`` trials of ``--budget-iters`` iterations through the
   Ray sweep (:mod:`mtmnv3.studies.sweep`, trials under ``WORK_DIR/trials``;
   finished trials are reused);
2. params and MACs of the whole model (``mtmnv3 summary``'s count) at the input size;
3. clean metrics (top-1, mAP@0.5, IDF1, HOTA) of every seed's checkpoint on
   the held-out test splits ``--eval-splits`` (``mtmnv3 test --track --splits``);
4. deployed files of the first seed's checkpoint for ONNX Runtime, OpenVINO
   and ExecuTorch, fp32 and int8 (``mtmnv3 export``'s export with its parity
   check), and each file's metrics on the first held-out split (``mtmnv3 test
   --backend ... --model-file``): the int8 drop per task;
5. the shift suite (``--corruptions`` x ``--severities``) with tracking, and
   FGSM at ``--eps`` against each head (``mtmnv3 robustness``'s study);
6. the SE / hard-swish / attention share of ONNX Runtime's kernel time.

Then every deployed file of every trunk is timed in the same interleaved
rounds of this process, and ``scorecard.md``, ``scorecard.json``,
``pareto_accuracy.png`` and ``pareto_robustness.png`` are written to
``WORK_DIR``. Ratios and mCE are relative to the first config (the
MobileNetV3-Small default unless CONFIGs are given). A cell a stage or runtime
could not fill says why (``n/a: ...``).
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import os
import platform
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from mtmnv3.cli._common import command_line, new_parser, report

__all__ = ["add_parser", "run", "main", "default_configs"]

DESCRIPTION = (
    "trunks side by side: accuracy, latency per runtime, int8, robustness (trains or reuses a sweep)"
)
EXAMPLE = """\
mtmnv3 scorecard --budget-iters 300 --seeds 0 --work-dir work_dirs/scorecard
mtmnv3 scorecard configs/mtmnv3_small_3task_synth.py configs/successors/mtmnv3_mobilenetv4_conv_small_3task_synth.py \\
    --budget-iters 100 --eval-sequences 4 --runtimes onnxruntime openvino"""

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CONFIG = "configs/mtmnv3_small_3task_synth.py"
SUCCESSOR_CONFIGS = "configs/successors/*.py"
#: Validation during training is a log line only (the scorecard tests separately): a small split keeps it cheap.
TRAIN_VAL_SEQUENCES = 4
#: int8 files are kept when they miss ``mtmnv3 export``'s parity bound (their task metrics measure
#: the loss; a briefly trained model's small output ranges make the bound strict); fp32 files must pass.
INT8_PARITY = "int8 kept when its parity check fails"
#: ``--runtimes`` name -> ``mtmnv3 export --format``.
FORMATS = {"onnxruntime": "onnx", "openvino": "openvino", "executorch": "executorch"}


def default_configs() -> list[str]:
    """The MobileNetV3-Small default and every successor config (paths relative to the repository when there)."""
    base = ROOT if (ROOT / DEFAULT_CONFIG).is_file() else Path.cwd()
    found = [base / DEFAULT_CONFIG, *sorted(Path(p) for p in glob.glob(str(base / SUCCESSOR_CONFIGS)))]
    return [os.path.relpath(p) if str(p).startswith(str(Path.cwd())) else str(p) for p in found]


def add_parser(subparsers: argparse._SubParsersAction | None = None) -> argparse.ArgumentParser:
    """The ``scorecard`` parser (under ``subparsers``, or standalone when None)."""
    from mtmnv3.studies.scorecard import RUNTIMES

    p = new_parser("scorecard", DESCRIPTION, EXAMPLE, subparsers)
    p.add_argument(
        "configs",
        nargs="*",
        metavar="CONFIG",
        help="3-task configs (default: the default and configs/successors/*.py)",
    )
    p.add_argument("--budget-iters", type=int, required=True, help="training iterations per trial")
    p.add_argument("--seeds", nargs="+", type=int, default=[0], help="training seeds (default 0)")
    p.add_argument(
        "--eval-splits", nargs="+", type=int, default=[1, 2], help="held-out test split seeds (default 1 2)"
    )
    p.add_argument(
        "--eval-sequences",
        type=int,
        default=16,
        help="sequences per held-out split (30 frames each; default 16)",
    )
    p.add_argument(
        "--corruptions",
        default="darkness,low_resolution,motion_blur,gaussian_noise",
        help="shift suite families, comma-separated or 'all' (default: 4 families)",
    )
    p.add_argument("--severities", default="3", help="comma-separated severities in 1..5 (default 3)")
    p.add_argument("--eps", default="2/255", help="FGSM radius against each head (default 2/255)")
    p.add_argument(
        "--runtimes",
        nargs="+",
        choices=list(RUNTIMES),
        default=list(RUNTIMES),
        help="runtimes measured (default all)",
    )
    p.add_argument(
        "--calib-images", type=int, default=32, help="training frames calibrating int8 (default 32)"
    )
    p.add_argument("--threads", type=int, default=1, help="runtime threads when timing (default 1)")
    p.add_argument("--rounds", type=int, default=15, help="interleaved timing rounds (default 15)")
    p.add_argument(
        "--cfg-options", nargs="+", default=[], metavar="KEY=VALUE", help="overrides for every trunk"
    )
    p.add_argument("--work-dir", default="work_dirs/scorecard", help="output and cache folder")
    p.add_argument("--address", help="join this Ray cluster for training instead of a local one")
    p.add_argument("--num-cpus", type=int, help="CPUs of the local Ray cluster (default: this machine's)")
    p.add_argument("--cpus-per-trial", type=int, default=1, help="CPUs (and threads) per training trial")
    return p


def _check_args(args: argparse.Namespace) -> list[str]:
    """The configs, after checking the arguments (ValueError naming what was wrong)."""
    from mtmnv3.studies.robustness import parse_corruptions, parse_eps, parse_severities

    configs = list(args.configs) or default_configs()
    missing = [c for c in configs if not os.path.isfile(c)]
    if missing:
        raise ValueError(f"config(s) not found: {missing}")
    for name in ("budget_iters", "eval_sequences", "calib_images", "threads", "rounds"):
        value = getattr(args, name)
        if value < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    if len(set(args.eval_splits)) != len(args.eval_splits) or min(args.eval_splits) < 0:
        raise ValueError(f"--eval-splits must be distinct seeds >= 0, got {args.eval_splits}")
    args.corruption_list = parse_corruptions(args.corruptions)
    args.severity_list = parse_severities(args.severities)
    args.eps_list = parse_eps(args.eps)[:1]
    if any(o.split("=", 1)[0] == "train_cfg.max_iters" for o in args.cfg_options):
        raise ValueError(
            "the training length is --budget-iters; leave train_cfg.max_iters out of --cfg-options"
        )
    return configs


def run(args: argparse.Namespace) -> int:
    """Build the scorecard; 0 on success, 1 when some trial failed (its row says so), 2 on bad input."""
    from mtmnv3.studies.sweep import failures, format_results, import_ray, run_sweep

    t0 = time.perf_counter()
    try:
        configs = _check_args(args)
        import_ray()
    except (ValueError, ImportError) as e:
        return report(e)
    work = Path(args.work_dir)
    train_options = [
        f"train_cfg.max_iters={args.budget_iters}",
        f"val_dataloader.dataset.num_sequences={TRAIN_VAL_SEQUENCES}",
        *args.cfg_options,
    ]
    print(
        f"training {len(configs)} trunk(s) x seeds {args.seeds}, {args.budget_iters} iterations each",
        flush=True,
    )
    try:
        trials = run_sweep(
            configs,
            args.seeds,
            work / "trials",
            train_options,
            address=args.address,
            num_cpus=args.num_cpus,
            cpus_per_trial=args.cpus_per_trial,
            on_result=lambda r: print(format_results([r]), flush=True),
        )
    except (ValueError, ImportError) as e:
        return report(e)
    trunks = []
    for config in configs:
        mine = [r for r in trials if r.config == os.path.abspath(config)]
        trunks.append(_measure_trunk(args, config, mine, work))
    _time_all(args, trunks, work)
    _write(args, trunks, trials, work, time.perf_counter() - t0)
    failed = failures(trials)
    if failed:
        for r in failed:
            print(f"error: trial {r.name} failed: {r.error}\n  log: {r.log}", file=sys.stderr)
        return 1
    return 0


# ---- stages --------------------------------------------------------------------------------------------
def _stamp(checkpoint: str, *extra: Any) -> str:
    """What a cached stage depends on: the checkpoint (path and mtime) and the stage's own settings."""
    return repr((os.path.abspath(checkpoint), os.stat(checkpoint).st_mtime_ns, *extra))


def _cached(path: Path, stamp: str, compute: Callable[[], Any], what: str) -> Any:
    """A stage's value from ``path`` when its stamp matches, else computed (a failure -> ``n/a: ...``) and stored."""
    import json

    from mtmnv3.core.fileio import atomic_write_json
    from mtmnv3.studies.scorecard import na

    if path.is_file():
        try:
            record = json.loads(path.read_text())
            if record.get("stamp") == stamp:
                return record["value"]
        except (OSError, ValueError):
            pass
    print(f"  {what} ...", flush=True)
    t = time.perf_counter()
    try:
        value = compute()
    except Exception as e:  # noqa: BLE001 - a stage that fails leaves its cells saying why, not the scorecard
        value = na(f"{what} failed: {type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}")
        print(f"  {value}", file=sys.stderr, flush=True)
    atomic_write_json(path, dict(stamp=stamp, value=value, seconds=time.perf_counter() - t))
    return value


def _eval_options(args: argparse.Namespace) -> list[str]:
    return [
        *args.cfg_options,
        f"test_dataloader.dataset.num_sequences={args.eval_sequences}",
        "test_dataloader.num_workers=0",
        "test_dataloader.persistent_workers=False",
    ]


def _trunk_name(config: str, options: dict) -> str:
    from mtmnv3.engine import load_config

    trunk = load_config(config, options).model.get("trunk", {})
    if trunk.get("type") == "TimmTrunk":
        return str(trunk.get("name"))
    if trunk.get("type") == "MobileNetV3Trunk":
        return f"mobilenetv3_{trunk.get('arch', 'large')}"
    return Path(config).stem


def _subcommand(name: str, main: Callable[[list[str]], int], argv: list[str], log: Path) -> int:
    """Run subcommand ``name``'s ``main`` in this process, its output appended to ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a", encoding="utf-8") as f, contextlib.redirect_stdout(f), contextlib.redirect_stderr(f):
        print(f"$ mtmnv3 {name} {shlex.join(argv)}", flush=True)
        try:
            return main(argv)
        except SystemExit as e:
            return int(e.code or 0)


def _measure_trunk(args: argparse.Namespace, config: str, trials: list, work: Path) -> dict[str, Any]:
    """Every stage of one trunk (cached in ``work/trunks/<stem>``)."""
    from mtmnv3.studies.scorecard import PRECISIONS, is_na, na
    from mtmnv3.studies.sweep import parse_options

    options = parse_options(_eval_options(args))
    name = _trunk_name(config, options)
    folder = work / "trunks" / Path(config).stem
    entry: dict[str, Any] = dict(name=name, config=config, latency={}, deployed={}, files={})
    done = [r for r in trials if r.ok]
    print(f"{name}: {len(done)} of {len(trials)} trial(s) trained", flush=True)
    if not done:
        failed = next((r for r in trials if not r.ok), None)
        reason = na(f"training failed: {failed.error}; log: {failed.log}" if failed else "no trial")
        entry.update(complexity={"Note": reason[5:]}, clean={}, robustness=reason, shares=reason)
        for runtime in FORMATS:
            for precision in PRECISIONS:
                entry["latency"][f"{runtime}/{precision}"] = reason
                entry["deployed"][f"{runtime}/{precision}"] = reason
        entry["clean_reason"] = reason
        return entry
    first = done[0].checkpoint
    from mtmnv3.cli.summary import model_complexity

    entry["complexity"] = _cached(
        folder / "complexity.json",
        _stamp(first, args.cfg_options),
        lambda: model_complexity(config, options),
        "params and MACs",
    )
    entry["clean"] = {}
    for r in done:
        splits = _clean_metrics(args, config, r.checkpoint, folder / f"clean_seed{r.seed}")
        if is_na(splits):
            entry["clean_reason"] = splits
            continue
        entry["clean"].update({f"seed{r.seed}/split{k}": metrics for k, metrics in splits.items()})
    _deploy(args, config, first, folder, entry, options)
    entry["robustness"] = _cached(
        folder / "robustness.json",
        _stamp(first, _eval_options(args), args.corruption_list, args.severity_list, args.eps_list),
        lambda: _robustness(args, config, first, options),
        "shift suite and FGSM",
    )
    onnx = entry["files"].get("onnxruntime/fp32")
    entry["shares"] = (
        _cached(
            folder / "shares.json",
            _stamp(first, _eval_options(args), args.threads),
            lambda: _shares(onnx, config, options, args.threads),
            "SE / hard-swish / attention share",
        )
        if onnx
        else entry["deployed"].get("onnxruntime/fp32", na("no ONNX Runtime fp32 file"))
    )
    return entry


def _clean_metrics(args: argparse.Namespace, config: str, checkpoint: str, folder: Path) -> dict[str, Any]:
    """Per held-out split, PyTorch fp32 metrics (``mtmnv3 test --track --splits``)."""
    return _cached(
        folder.with_suffix(".json"),
        _stamp(checkpoint, _eval_options(args), args.eval_splits),
        lambda: _test(config, checkpoint, folder, args.eval_splits, _eval_options(args)),
        f"clean metrics of {Path(checkpoint).parent.name}",
    )


def _test(
    config: str,
    checkpoint: str,
    folder: Path,
    splits: Sequence[int],
    options: list[str],
    extra: Sequence[str] = (),
) -> dict[str, Any]:
    """``mtmnv3 test ... --track --splits`` -> ``{split: metrics}``; raises with the log's path when it fails."""
    import json

    from mtmnv3.cli.test import main as test_main

    out = folder / "metrics.json"
    argv = [config, checkpoint, "--track", "--splits", *map(str, splits), "--work-dir", str(folder)]
    argv += ["--out-json", str(out), *extra, "--cfg-options", *options]
    log = folder / "test.log"
    if _subcommand("test", test_main, argv, log) != 0 or not out.is_file():
        raise RuntimeError(f"mtmnv3 test failed; log: {log}")
    return json.loads(out.read_text())["splits"]


def _deploy(
    args: argparse.Namespace, config: str, checkpoint: str, folder: Path, entry: dict, options: dict
) -> None:
    """Export every runtime x precision file (parity-checked) and evaluate each on the first held-out split."""
    from mtmnv3.studies.scorecard import PRECISIONS, RUNTIMES, is_na, na

    model_cache: dict[str, Any] = {}
    for runtime in FORMATS:
        for precision in PRECISIONS:
            key = f"{runtime}/{precision}"
            if runtime not in args.runtimes:
                entry["latency"][key] = entry["deployed"][key] = na(f"{runtime} not in --runtimes")
                continue
            path = folder / "deploy" / f"{runtime}_{precision}{RUNTIMES[runtime]}"
            stamp = _stamp(checkpoint, args.cfg_options, args.calib_images, INT8_PARITY)
            made = _cached(
                folder / "deploy" / f"{runtime}_{precision}.json",
                stamp,
                lambda runtime=runtime, precision=precision, path=path: _export(
                    args, config, checkpoint, runtime, precision, path, options, model_cache
                ),
                f"{runtime} {precision} export",
            )
            if is_na(made):
                entry["latency"][key] = entry["deployed"][key] = made
                continue
            if not path.is_file():  # the record outlived its file: export again next run
                (folder / "deploy" / f"{runtime}_{precision}.json").unlink()
                entry["latency"][key] = entry["deployed"][key] = na(
                    f"{path} is missing; rerun to export it again"
                )
                continue
            entry["files"][key] = str(path)
            entry.setdefault("exports", {})[key] = made
            splits = _cached(
                folder / "deploy" / f"{runtime}_{precision}_metrics.json",
                _stamp(checkpoint, _eval_options(args), args.eval_splits[0], path.stat().st_mtime_ns),
                lambda runtime=runtime, path=path, precision=precision: _test(
                    config,
                    checkpoint,
                    folder / "deploy" / f"test_{runtime}_{precision}",
                    args.eval_splits[:1],
                    _eval_options(args),
                    ["--backend", runtime, "--model-file", str(path), "--threads", str(args.threads)],
                ),
                f"{runtime} {precision} file's metrics",
            )
            entry["deployed"][key] = splits if is_na(splits) else next(iter(splits.values()))


def _export(
    args: argparse.Namespace,
    config: str,
    checkpoint: str,
    runtime: str,
    precision: str,
    path: Path,
    options: dict,
    model_cache: dict,
) -> dict[str, Any]:
    """One deployed file with ``mtmnv3 export``'s export and parity check; returns its sidecar's summary."""
    from mtmnv3.apis import init_model
    from mtmnv3.cli._deploy import export_deployed
    from mtmnv3.engine import input_size, load_config
    from mtmnv3.runtime.sessions import check_backend

    check_backend(runtime)  # ImportError naming the package when the runtime is not installed
    if "model" not in model_cache:
        model_cache["cfg"] = load_config(config, options)
        model_cache["model"] = init_model(config, checkpoint, options).eval()
    cfg = model_cache["cfg"]
    size = input_size(cfg.test_dataloader.dataset)
    meta = export_deployed(
        model_cache["model"],
        FORMATS[runtime],
        path,
        config,
        cfg,
        size,
        int8=precision == "int8",
        calib_images=args.calib_images,
        parity_frames=4,
        require_parity=precision == "fp32",
    )
    parity = meta.get("parity", {})
    worst = max((o["rel"] for o in parity.get("outputs", {}).values()), default=None)
    return dict(
        path=str(path),
        size=size,
        precision=meta.get("precision"),
        parity=parity.get("passed"),
        worst_rel=worst,
    )


def _robustness(args: argparse.Namespace, config: str, checkpoint: str, options: dict) -> dict[str, Any]:
    """The shift suite with tracking, and FGSM against each head (``mtmnv3 robustness``'s study)."""
    from mtmnv3.engine import load_config
    from mtmnv3.studies.robustness import build_study, run_study

    cfg = load_config(config, options)
    study, _ = build_study(cfg, checkpoint, None, "cpu", 0, progress=False, track=True)
    results = run_study(
        study, args.corruption_list, args.severity_list, meta=dict(config=config, checkpoint=checkpoint)
    )
    heads = list(study.model.heads)
    results["attacks"] = study.run_attacks(args.eps_list, methods=("fgsm",), targets=heads)
    return results


def _shares(onnx: str, config: str, options: dict, threads: int) -> dict[str, Any]:
    from mtmnv3.engine import input_size, load_config
    from mtmnv3.studies.scorecard import latency_shares

    size = input_size(load_config(config, options).test_dataloader.dataset)
    return latency_shares(onnx, size, threads=threads)


def _time_all(args: argparse.Namespace, trunks: list[dict], work: Path) -> None:
    """Every trunk's files in the same interleaved rounds (cached while no file changed)."""
    from mtmnv3.engine import input_size, load_config
    from mtmnv3.studies.scorecard import time_files
    from mtmnv3.studies.sweep import parse_options

    files = {(t["name"], key): path for t in trunks for key, path in t["files"].items()}
    if not files:
        return
    sizes = {
        t["name"]: input_size(
            load_config(t["config"], parse_options(_eval_options(args))).test_dataloader.dataset
        )
        for t in trunks
    }
    stamp = repr(
        sorted((k, p, os.stat(p).st_mtime_ns) for k, p in files.items()) + [args.threads, args.rounds]
    )

    def measure() -> list:
        out = []
        for size in sorted(set(sizes.values())):
            group = {k: p for k, p in files.items() if sizes[k[0]] == size}
            print(
                f"timing {len(group)} files at {size} px, {args.threads} thread(s), {args.rounds} rounds",
                flush=True,
            )
            out += [[list(k), v] for k, v in time_files(group, args.threads, size, args.rounds).items()]
        return out

    timed = _cached(work / "latency.json", stamp, measure, "latency of every file")
    if isinstance(timed, str):
        for t in trunks:
            for key in t["files"]:
                t["latency"][key] = timed
        return
    got = {tuple(k): v for k, v in timed}
    for t in trunks:
        for key in t["files"]:
            t["latency"][key] = got.get((t["name"], key), "n/a: not timed")


def _write(args: argparse.Namespace, trunks: list[dict], trials: list, work: Path, wall_s: float) -> None:
    from mtmnv3.core.fileio import atomic_open, atomic_write_json
    from mtmnv3.engine import input_size, load_config
    from mtmnv3.studies.scorecard import build_rows, format_markdown, plot_pareto
    from mtmnv3.studies.sweep import parse_options

    rows = build_rows(trunks, trunks[0]["name"])
    size = input_size(
        load_config(trunks[0]["config"], parse_options(_eval_options(args))).test_dataloader.dataset
    )
    train_s = sum(r.wall_s for r in trials)
    budget = {
        "command": getattr(args, "command_line", None) or "mtmnv3 scorecard",
        "training": f"{args.budget_iters} iterations per trial, seeds {args.seeds}, the configs' batch and schedule "
        f"scaled to that length (trials under {work / 'trials'})",
        "input size": f"{size} x {size}",
        "held-out evaluation": f"test split seeds {args.eval_splits}, {args.eval_sequences} sequences each "
        f"(deployed files: split {args.eval_splits[0]} only)",
        "shift suite": f"{', '.join(args.corruption_list)} at severities {args.severity_list}, with tracking",
        "attacks": f"FGSM at eps {args.eps_list[0][0]} against each head (PGD left out at this budget)",
        "int8": f"each runtime's own quantizer, {args.calib_images} training frames calibrating",
        "timing": f"batch 1, {args.threads} runtime thread(s), {args.rounds} interleaved rounds",
        "reference": f"{trunks[0]['name']} ({trunks[0]['config']})",
        "host": f"{os.cpu_count()} CPU cores ({platform.processor() or platform.machine()}), shared",
        "wall time": f"{wall_s / 60:.1f} min this run (cached stages reused); training {train_s / 60:.1f} min "
        "summed over the trials when they ran",
    }
    work.mkdir(parents=True, exist_ok=True)
    plots = plot_pareto(rows, work)
    atomic_write_json(work / "scorecard.json", dict(budget=budget, rows=rows))
    with atomic_open(work / "scorecard.md", "w", encoding="utf-8") as f:
        f.write(format_markdown(rows, budget, plots))
    print(f"wrote {work / 'scorecard.md'}, {work / 'scorecard.json'}, " + ", ".join(plots))


def main(argv: Sequence[str] | None = None) -> int:
    """``mtmnv3 scorecard`` with ``argv`` (default ``sys.argv[1:]``)."""
    args = add_parser().parse_args(argv)
    args.command_line = command_line("scorecard", argv)
    return run(args)
