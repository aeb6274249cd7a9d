"""Training throughput: mmengine Runner vs a plain PyTorch loop, same model and data.

Both train the three-task MobileNetV3-Small config for the same iterations on
the same data; the table reports images/s and the ratio Runner/plain, the two
measured in one run, plain loop first and again last (drift check).

A second table times the Runner under the settings that decide CPU training
speed, as ratios against the config's own settings in the same run: data
loading in a worker process or in the training process, and NCHW vs
channels-last memory (``model.channels_last``). On 2 cores a loader worker
competes with the two compute threads for the same cores.

A third table times design choices of the model and data against the config
(each one change): full 3x3 convs in the dense head branches instead of
depthwise-separable ones, a 32768-identity classifier, and the input size.

Usage: python benchmarks/train_throughput.py [--iters 60] [--batch 32] [--config CONFIG] [--no-settings] [--no-design]
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
import time

import torch
from mmengine.dataset import pseudo_collate
from mmengine.hooks import Hook
from mmengine.registry import init_default_scope

from mtmnv3.core.profiling import format_table
from mtmnv3.core.registry import DATASETS, MODELS
from mtmnv3.engine import build_runner, dataset_keys, dataset_parts, load_config, prepare_train_config

WARMUP = 5


class _Timer(Hook):
    """Times training iterations after the warm-up ones."""

    def __init__(self) -> None:
        self.start = None
        self.end = None
        self.count = 0

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        if runner.iter == WARMUP:
            self.start = time.perf_counter()

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if runner.iter >= WARMUP:
            self.count += 1
            self.end = time.perf_counter()  # not after train(): the loop validates at its last iteration


def plain_loop(cfg, iters: int) -> float:
    """images/s of a hand-written loop: DataLoader -> preprocess -> loss -> AdamW step."""
    init_default_scope("mtmnv3")
    torch.manual_seed(0)
    model = MODELS.build(copy.deepcopy(cfg.model)).train()
    loader_cfg = cfg.train_dataloader
    dataset = DATASETS.build(copy.deepcopy(loader_cfg.dataset))
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=loader_cfg.batch_size,
        shuffle=True,
        num_workers=loader_cfg.num_workers,
        persistent_workers=loader_cfg.num_workers > 0,
        collate_fn=pseudo_collate,
        drop_last=True,
    )
    opt_cfg = dict(cfg.optim_wrapper.optimizer)
    opt = torch.optim.AdamW(model.parameters(), lr=opt_cfg["lr"], weight_decay=opt_cfg["weight_decay"])
    seen, it, start = 0, 0, None
    while it < iters + WARMUP:
        for batch in loader:
            if it == WARMUP:
                start = time.perf_counter()
            data = model.data_preprocessor(batch, True)
            losses = model.loss(data["inputs"], data["data_samples"])
            loss = sum(losses.values())
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
            opt.step()
            if it >= WARMUP:
                seen += len(batch["inputs"])
            it += 1
            if it >= iters + WARMUP:
                break
    return seen / (time.perf_counter() - start)


def runner_loop(cfg, iters: int) -> float:
    cfg = copy.deepcopy(cfg)
    cfg.train_cfg.max_iters = iters + WARMUP
    cfg.train_cfg.val_interval = 10**9
    cfg.default_hooks.checkpoint.interval = 10**9
    cfg.default_hooks.checkpoint.save_last = False
    cfg.default_hooks.logger.interval = 10**9
    cfg.param_scheduler = []
    cfg.work_dir = tempfile.mkdtemp(prefix="mtmnv3_bench_")
    runner = build_runner(cfg)
    timer = _Timer()
    runner.register_hook(timer, priority="LOWEST")
    runner.train()
    return timer.count * cfg.train_dataloader.batch_size / (timer.end - timer.start)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="configs/mtmnv3_small_3task_synth.py")
    p.add_argument("--iters", type=int, default=60)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--data-root", default="data/synth")
    p.add_argument("--no-settings", action="store_true", help="skip the loader/memory-format table")
    p.add_argument("--no-design", action="store_true", help="skip the head/identity/input-size table")
    args = p.parse_args(argv)
    cfg = load_config(args.config)
    cfg = prepare_train_config(cfg, args.config)
    cfg.train_dataloader.batch_size = args.batch
    cfg.merge_from_dict(
        {
            f"{key}.data_root": args.data_root
            for split in ("train", "val", "test")
            for key in dataset_keys(cfg, split)
        }
    )
    plain1 = plain_loop(cfg, args.iters)
    runner = runner_loop(cfg, args.iters)
    plain2 = plain_loop(cfg, args.iters)
    plain = (plain1 + plain2) / 2
    rows = [
        ["plain PyTorch loop (mean of first and last)", plain, 1.0],
        ["mmengine Runner (mtmnv3 train_step)", runner, runner / plain],
    ]
    print(f"Training throughput, {args.config}, batch {args.batch}, {args.iters} timed iterations\n")
    print(format_table(["loop", "images/s", "ratio vs plain"], rows))
    print(f"\n(plain loop drift: first {plain1:.1f}, last {plain2:.1f} images/s)")
    if not args.no_settings:
        print_settings_table(cfg, args.iters, runner)
    if not args.no_design:
        print_design_table(cfg, args.iters, runner)
    return 0


def with_settings(cfg, num_workers: int, channels_last: bool):
    cfg = copy.deepcopy(cfg)
    cfg.train_dataloader.num_workers = num_workers
    cfg.train_dataloader.persistent_workers = num_workers > 0
    cfg.model.channels_last = channels_last
    return cfg


def print_settings_table(cfg, iters: int, reference: float) -> None:
    """Runner images/s per (loader workers, memory format), against the config's own run."""
    own = (cfg.train_dataloader.num_workers, bool(cfg.model.get("channels_last", False)))
    rows = []
    for workers in (0, 1):
        for channels_last in (False, True):
            setting = (workers, channels_last)
            speed = reference if setting == own else runner_loop(with_settings(cfg, *setting), iters)
            name = f"{'loader in the training process' if workers == 0 else f'{workers} loader worker'}, "
            name += "channels-last" if channels_last else "NCHW"
            rows.append([name + (" (config)" if setting == own else ""), speed, speed / reference])
    print("\nRunner throughput by loader and memory format\n")
    print(format_table(["setting", "images/s", "ratio vs config"], rows))


def design_variants(cfg) -> list[tuple[str, dict]]:
    """(name, ``--cfg-options``-style changes) of each design alternative the config allows."""
    heads = cfg.model.heads
    variants = []
    dense = [name for name in ("det", "emb") if heads.get(name, {}).get("branch_conv") == "separable"]
    if dense:
        variants.append(
            (
                "full 3x3 convs in the head branches",
                {f"model.heads.{n}.branch_conv": "standard" for n in dense},
            )
        )
    if heads.get("emb", {}).get("loss_type", "id") == "id" and heads.emb.get("num_ids", 0) < 32768:
        variants.append(("identity classifier of 32768 ids", {"model.heads.emb.num_ids": 32768}))
    letterbox = [
        (key, i, t["size"])
        for key, part in zip(dataset_keys(cfg, "train"), dataset_parts(cfg.train_dataloader.dataset))
        for i, t in enumerate(part.pipeline)
        if t["type"] == "Letterbox"
    ]
    if letterbox:
        size = letterbox[0][2]
        for other in (size - 32, size + 32):
            variants.append(
                (f"{other} px input", {f"{key}.pipeline.{i}.size": other for key, i, _ in letterbox})
            )
    return variants


def print_design_table(cfg, iters: int, reference: float) -> None:
    """Runner images/s of each design alternative, against the config's own run."""
    rows = [["config", reference, 1.0]]
    for name, changes in design_variants(cfg):
        variant = copy.deepcopy(cfg)
        variant.merge_from_dict(changes)
        speed = runner_loop(variant, iters)
        rows.append([name, speed, speed / reference])
    print("\nRunner throughput by design choice (one change each)\n")
    print(format_table(["design", "images/s", "ratio vs config"], rows))


if __name__ == "__main__":
    sys.exit(main())
