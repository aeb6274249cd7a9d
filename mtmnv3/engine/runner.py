"""Config loading and Runner construction shared by the command-line tools."""

from __future__ import annotations

import argparse
import datetime
import logging
import os
import os.path as osp
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from mmengine.config import Config
from mmengine.config import DictAction as _MMEngineDictAction
from mmengine.logging import MMLogger
from mmengine.runner import Runner

from mtmnv3.core.checkpoint import ATOMIC_BACKEND_ARGS, allow_mmengine_checkpoint_globals

__all__ = [
    "dataset_keys",
    "dataset_parts",
    "load_config",
    "scale_schedule",
    "prepare_train_config",
    "validate_config",
    "build_runner",
    "QuietRunner",
    "add_runner_args",
    "parse_runner_args",
    "DictAction",
]

#: Launchers mmengine's Runner accepts (``--launcher``).
LAUNCHERS = ("none", "pytorch", "slurm", "mpi")


class DictAction(_MMEngineDictAction):
    """mmengine's ``--cfg-options`` parser, plus values written ``dict(key=value, ...)``.

    mmengine parses ``[...]`` and ``(...)`` values but not ``dict(...)`` (it
    recurses without end on one), the form mmdet's documentation uses for
    ``"model.backbone.init_cfg=dict(type='Pretrained', checkpoint=PATH)"``.
    Each ``key=value`` inside is parsed like a top-level value: quotes dropped,
    numbers, booleans and None converted, lists, tuples and ``dict(...)`` nested.
    """

    @staticmethod
    def _parse_iterable(val: str) -> Any:
        text = val.strip().strip("'\"").strip()
        if not (text.startswith("dict(") and text.endswith(")")):
            return _MMEngineDictAction._parse_iterable(val)
        out: dict[str, Any] = {}
        for item in _split_top_level(text[len("dict(") : -1]):
            key, sep, value = item.partition("=")
            if not sep or not key.strip().isidentifier():
                raise ValueError(f"cannot parse {val!r}: dict(...) takes key=value pairs, got {item!r}")
            out[key.strip()] = DictAction._parse_iterable(value)
        return out


def _split_top_level(text: str) -> list[str]:
    """Split at the commas outside brackets and quotes; empty items dropped."""
    items, depth, quote, start = [], 0, "", 0
    for i, ch in enumerate(text):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "," and depth == 0:
            items.append(text[start:i])
            start = i + 1
    items.append(text[start:])
    return [item for item in items if item.strip()]


def add_runner_args(parser: argparse.ArgumentParser) -> None:
    """The flags every Runner tool shares (mmdet's names): ``--cfg-options``,
    ``--launcher`` and ``--local-rank`` (set by older launchers)."""
    parser.add_argument(
        "--cfg-options", nargs="+", action=DictAction, help="override config entries, key=value"
    )
    parser.add_argument("--launcher", choices=LAUNCHERS, default="none")
    parser.add_argument("--local_rank", "--local-rank", type=int, default=0)


def parse_runner_args(
    parser: argparse.ArgumentParser, argv: Sequence[str] | None = None
) -> argparse.Namespace:
    """Parse, and export ``LOCAL_RANK`` for torch.distributed as mmengine expects."""
    args = parser.parse_args(argv)
    os.environ.setdefault("LOCAL_RANK", str(args.local_rank))
    return args


def _option(options: Mapping[str, Any], dotted: str) -> Any:
    """The value ``options`` sets for ``dotted`` (flat ``a.b`` keys, as ``--cfg-options`` gives, or nested)."""
    if dotted in options:
        return options[dotted]
    node: Any = options
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def scale_schedule(cfg: Config, max_iters: int) -> None:
    """Fit an iteration-based schedule to ``max_iters``: every iteration-based
    scheduler's ``begin``/``end`` scale by ``max_iters / train_cfg.max_iters``
    (warm-up and decay keep their shares of the run), and a validation
    interval equal to the run's length stays at its end.

    ``--cfg-options train_cfg.max_iters=N`` applies this before merging, so
    setting the length alone gives a whole schedule; a scheduler key given
    on the command line too wins.
    """
    train_cfg = cfg.get("train_cfg") or {}
    old = train_cfg.get("max_iters")
    if not isinstance(old, int) or old <= 0 or max_iters == old:
        return
    if max_iters < 1:
        raise ValueError(f"train_cfg.max_iters must be >= 1, got {max_iters}")
    ratio = max_iters / old
    schedulers = cfg.get("param_scheduler") or []
    prev: tuple[int, int] | None = None  # the previous scheduler's (old end, new end)
    for sched in [schedulers] if isinstance(schedulers, Mapping) else schedulers:
        if sched.get("by_epoch", True):
            continue
        begin, end = sched.get("begin", 0), sched.get("end")
        if not isinstance(begin, int):
            continue
        new_begin = min(max_iters, max(0, round(begin * ratio)))
        if prev is not None and begin == prev[0]:
            new_begin = prev[1]  # a scheduler that started where the previous one ended still does
        if "begin" in sched:
            sched["begin"] = new_begin
        if isinstance(end, int):
            # At least two iterations where the file had them: a one-step LinearLR warm-up never
            # reaches its end factor, and the decay after it would start from the warm-up's low rate.
            new_end = max(round(end * ratio), new_begin + min(2, max(1, end - begin)))
            sched["end"] = max(1, min(max_iters, new_end))
            if sched.get("begin", 0) >= sched["end"]:  # a run too short for it: its last iteration
                sched["begin"] = sched["end"] - 1
            prev = (end, sched["end"])
    if train_cfg.get("val_interval") == old:
        train_cfg["val_interval"] = max_iters
    train_cfg["max_iters"] = max_iters


def load_config(path: str | os.PathLike, cfg_options: dict[str, Any] | None = None) -> Config:
    """Load an mmengine config; ``cfg_options`` are merged on top (``--cfg-options``).

    ``train_cfg.max_iters`` among the options rescales the file's
    iteration-based schedule first (:func:`scale_schedule`).
    """
    if not osp.isfile(path):
        raise FileNotFoundError(f"config file not found: {path}")
    cfg = Config.fromfile(str(path))
    if cfg_options:
        max_iters = _option(cfg_options, "train_cfg.max_iters")
        if max_iters is not None:
            scale_schedule(cfg, int(max_iters))
        cfg.merge_from_dict(cfg_options)
    return cfg


def input_size(dataset_cfg: Mapping[str, Any], default: int = 320) -> int:
    """The square input size the model sees for a dataset config: its
    pipeline's ``Letterbox`` size, else the dataset's ``image_size``, else
    ``default``. Tools that feed frames themselves (tracking, the demo) use it
    so they run the network at the size it was trained and evaluated at."""
    for t in dataset_cfg.get("pipeline") or ():
        if isinstance(t, Mapping) and t.get("type") == "Letterbox" and t.get("size") is not None:
            size = t["size"]
            return int(size if isinstance(size, int) else max(size))
    return int(dataset_cfg.get("image_size", default))


def check_split_seeds(cfg: Config, seeds: Sequence[int], option: str) -> None:
    """Check that the config's test split can be generated again with each of ``seeds``.

    Tools that evaluate or calibrate on regenerated held-out splits of the
    built-in data (``tools/test.py --splits``, ``tools/calibrate_tracker.py
    --split-seed``) call this before any work.

    Raises:
        ValueError: the test dataset takes no ``seed`` (not generated data), or
            ``seeds`` repeat; the message names ``option``.
    """
    import inspect

    from mmengine.registry import init_default_scope

    from mtmnv3.core.registry import DATASETS

    dataset = cfg.get("test_dataloader", {}).get("dataset", {})
    init_default_scope(cfg.get("default_scope", "mtmnv3"))
    DATASETS.import_from_location()
    cls = DATASETS.get(dataset.get("type"))
    if cls is None or "seed" not in inspect.signature(cls).parameters:
        raise ValueError(
            f"{option} needs a test split generated from a seed (the built-in synthetic data); "
            f"this config's test dataset is {dataset.get('type')!r}"
        )
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"{option} seeds must be distinct, got {list(seeds)}")


def dataset_keys(cfg: Config, split: str) -> list[str]:
    """Dotted config keys of the dataset(s) a split's loader reads, for
    ``--cfg-options``: ``['train_dataloader.dataset']``, or one key per part
    when the dataset is a ``ConcatDataset`` (``...dataset.datasets.0``, ...).

    Raises:
        KeyError: the config has no ``{split}_dataloader.dataset``.
    """
    loader = cfg.get(f"{split}_dataloader")
    if not loader or not loader.get("dataset"):
        raise KeyError(f"the config has no {split}_dataloader.dataset")
    dataset = loader["dataset"]
    key = f"{split}_dataloader.dataset"
    if is_concat(dataset):
        return [f"{key}.datasets.{i}" for i in range(len(dataset["datasets"]))]
    return [key]


def is_concat(dataset: Any) -> bool:
    return isinstance(dataset, dict) and dataset.get("type") == "ConcatDataset"


def dataset_parts(dataset: dict) -> list[dict]:
    """The dataset configs a loader's ``dataset`` config reads: a
    ``ConcatDataset``'s parts (the same objects, in the order of
    :func:`dataset_keys`), else the dataset itself."""
    return list(dataset["datasets"]) if is_concat(dataset) else [dataset]


def prepare_train_config(
    cfg: Config,
    config_path: str | os.PathLike,
    work_dir: str | None = None,
    resume: str | None = None,
    amp: bool = False,
    launcher: str = "none",
) -> Config:
    """Apply the train tool's flags to a config (mmdet ``tools/train.py`` semantics).

    ``resume='auto'`` resumes from the work dir's last checkpoint; a path
    resumes from that checkpoint.
    """
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get("work_dir") is None:
        cfg.work_dir = osp.join("work_dirs", osp.splitext(osp.basename(str(config_path)))[0])
    cfg.launcher = launcher
    if resume == "auto":
        cfg.resume, cfg.load_from = True, None
    elif resume is not None:
        if not osp.isfile(resume):
            raise FileNotFoundError(f"--resume checkpoint not found: {resume}")
        cfg.resume, cfg.load_from = True, resume
    if amp:
        if not torch.cuda.is_available():
            raise ValueError(
                "--amp needs a CUDA GPU (mmengine's AmpOptimWrapper supports only GPU/NPU/MLU/MUSA); "
                "this machine has none"
            )
        optim = cfg.optim_wrapper
        if optim.get("type", "OptimWrapper") != "OptimWrapper":
            raise ValueError(f"--amp needs optim_wrapper.type='OptimWrapper', got {optim.get('type')!r}")
        optim.type = "AmpOptimWrapper"
        optim.setdefault("loss_scale", "dynamic")
    # Checkpoints are always written atomically.
    ckpt = cfg.get("default_hooks", {}).get("checkpoint")
    if ckpt is not None:
        ckpt.setdefault("backend_args", dict(ATOMIC_BACKEND_ARGS))
    if not torch.cuda.is_available():
        cfg.setdefault("env_cfg", {}).setdefault("dist_cfg", {})["backend"] = "gloo"
    return cfg


def _check_type(registry: Any, cfg: Any, where: str) -> None:
    if not isinstance(cfg, dict) or not isinstance(cfg.get("type"), str):
        return
    if registry.get(cfg["type"]) is None:
        raise KeyError(
            f"unknown {registry.name} type {cfg['type']!r} in {where}; "
            f"registered: {sorted(registry.module_dict)}"
        )


def validate_config(cfg: Config) -> None:
    """Check, before anything runs, that every model, head, dataset and metric
    type the config names is registered (mmengine would only find out when it
    builds them, possibly after training)."""
    from mmengine.registry import init_default_scope

    from mtmnv3.core.registry import DATASETS, METRICS, MODELS

    init_default_scope(cfg.get("default_scope", "mtmnv3"))
    MODELS.import_from_location()
    DATASETS.import_from_location()
    METRICS.import_from_location()
    model = cfg.get("model", {})
    _check_type(MODELS, model, "model")
    for name, head in (model.get("heads") or {}).items():
        _check_type(MODELS, head, f"model.heads.{name}")
    for split in ("train", "val", "test"):
        loader = cfg.get(f"{split}_dataloader")
        if loader and loader.get("dataset"):
            _check_type(DATASETS, loader["dataset"], f"{split}_dataloader.dataset")
            if is_concat(loader["dataset"]):
                for key, part in zip(dataset_keys(cfg, split), dataset_parts(loader["dataset"])):
                    _check_type(DATASETS, part, key)
        evaluator = cfg.get(f"{split}_evaluator")
        for i, metric in enumerate(evaluator if isinstance(evaluator, (list, tuple)) else [evaluator]):
            _check_type(METRICS, metric, f"{split}_evaluator[{i}]")
    _check_distributed_weighting(cfg)


def _check_distributed_weighting(cfg: Config) -> None:
    """Refuse per-task-gradient loss weightings under a launcher, before anything runs.

    They need each task's gradient of the unreduced model; mmengine's DDP
    wrapper gives only the reduced one (and would otherwise fail obscurely at
    start-up on GradNorm's optimiser state).
    """
    launcher = cfg.get("launcher", "none")
    weighting = (cfg.get("model") or {}).get("loss_weighting")
    if launcher == "none" or not isinstance(weighting, dict):
        return
    from mtmnv3.core.registry import LOSS_WEIGHTINGS
    from mtmnv3.models.weighting import GradientWeighting

    method = LOSS_WEIGHTINGS.get(weighting.get("type"))
    if isinstance(method, type) and issubclass(method, GradientWeighting):
        raise ValueError(
            f"model.loss_weighting {weighting['type']!r} manipulates per-task gradients and runs in "
            f"single-process training only, not with --launcher {launcher}; use a loss-based method "
            "(EqualWeighting, StaticWeighting, UncertaintyWeighting, DWA, FAMO)"
        )


def init_cpu_distributed(cfg: Config) -> None:
    """Start the gloo process group for ``--launcher pytorch`` on a machine without CUDA.

    mmengine's PyTorch launcher always calls ``torch.cuda.set_device``, which
    fails on CPU-only machines; the Runner skips its own initialisation when a
    process group already exists, so we create it here (from torchrun's env).
    Its DDP wrapper also passes ``device_ids=[LOCAL_RANK]``, which DDP rejects
    for CPU modules, so the wrapper config sets ``device_ids=None``.
    """
    if cfg.get("launcher", "none") != "pytorch" or torch.cuda.is_available():
        return
    import torch.distributed as dist

    wrapper = cfg.get("model_wrapper_cfg") or dict(type="MMDistributedDataParallel", broadcast_buffers=False)
    wrapper["device_ids"] = None
    wrapper.setdefault("find_unused_parameters", cfg.get("find_unused_parameters", False))
    cfg.model_wrapper_cfg = wrapper

    if dist.is_initialized():
        return
    missing = [k for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
    if missing:
        raise ValueError(f"--launcher pytorch needs torchrun's environment; {missing} are not set")
    timeout = cfg.get("env_cfg", {}).get("dist_cfg", {}).get("timeout")
    kwargs = {} if timeout is None else {"timeout": datetime.timedelta(seconds=timeout)}
    dist.init_process_group(backend="gloo", **kwargs)


def close_distributed() -> None:
    """Tear the process group down before the interpreter exits (call after a run
    that succeeded). Left to the interpreter's shutdown, gloo's worker threads can
    still hold pending work and a rank aborts ("terminate called without an active
    exception") after a run that finished. Not after a failure: a failed rank must
    not wait on its peers in a collective teardown."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()  # no rank tears down while a peer still talks to it
        dist.destroy_process_group()


#: Start of the Runner's set-up dumps (environment, whole config, hook order): kept in the run's log file, off the console.
SETUP_DUMPS = ("\n---", "Config:\n", "Hooks will be executed in the following order")


#: mmengine's notices about its own internals, off the console (kept in the log file): CheckpointHook builds a
#: deprecated FileClient on every run, and an iteration-based loop restarts its dataloader every epoch.
MMENGINE_INTERNAL_NOTICES = (
    '"HardDiskBackend" is the alias of "LocalBackend"',
    '"FileClient" will be deprecated in future',
    "Reach the end of the dataloader, it will be restarted",
)


class _SetupDumpFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        msg = str(record.msg)
        return not (msg.startswith(SETUP_DUMPS) or msg.startswith(MMENGINE_INTERNAL_NOTICES))


class QuietRunner(Runner):
    """mmengine's Runner whose console leaves out the set-up dumps (set ``verbose_console=True`` to keep them).

    The environment, the whole config and the hook order still go to the
    run's log file in the work dir; the console shows what a user follows:
    warnings, losses with their ETA, metrics.
    """

    verbose_console = False

    def build_logger(
        self, log_level: int | str = "INFO", log_file: str | None = None, **kwargs: Any
    ) -> MMLogger:
        logger = super().build_logger(log_level=log_level, log_file=log_file, **kwargs)
        if not self.verbose_console:
            for handler in logger.handlers:
                if type(handler) is logging.StreamHandler and not any(
                    isinstance(f, _SetupDumpFilter) for f in handler.filters
                ):
                    handler.addFilter(_SetupDumpFilter())
        return logger


def build_runner(cfg: Config) -> Runner:
    """Validate the config, then build mmengine's Runner (from ``cfg.runner_type`` if set)."""
    allow_mmengine_checkpoint_globals()
    validate_config(cfg)
    init_cpu_distributed(cfg)
    if "runner_type" in cfg:
        from mmengine.registry import RUNNERS

        return RUNNERS.build(cfg)
    return QuietRunner.from_cfg(cfg)
