"""The robustness study runner: one model on cached test batches under corruptions and attacks.

Corruption suite (Hendrycks & Dietterich, "Benchmarking Neural Network
Robustness to Common Corruptions and Perturbations", ICLR 2019). The test
batches are loaded once and kept in memory, and each (corruption, severity)
condition corrupts the collated uint8 batch with the vectorised
:func:`~mtmnv3.data.corruptions.corrupt` before the model's own ``test_step``.
Each image's corruption stream is keyed by its ``video_id`` / ``frame_id``
metainfo (still images: :func:`still_image_video_id`), exactly as the
``CorruptFrames`` pipeline transform does, so a video sees one camera fault
and the result does not depend on batching.

Attack mode: FGSM (Goodfellow et al., ICLR 2015) and PGD (Madry et al., ICLR
2018) at each eps against each head's loss and against the shared trunk's
features (:mod:`.attacks`); every task's metric is measured under every attack,
giving a cross-task transfer table (rows: attack target, columns: task metric).

Tracking (MOT) metrics need a tracker run over each video in frame order.
They are left out unless :class:`RobustnessStudy` gets a
``sequence_hook_factory``: a callable returning, for each condition, a fresh
callback that receives every predicted batch in dataloader order and writes
``pred_track_instances`` onto the samples (:class:`~.tracking.TrackingHook`).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from mmengine.evaluator import Evaluator
from mmengine.model import ImgDataPreprocessor
from torch import Tensor, nn
from tqdm import tqdm

from mtmnv3.core.structures import MultiTaskDataSample
from mtmnv3.data.corrupt_transforms import still_image_video_id
from mtmnv3.data.corruptions import corrupt
from mtmnv3.studies.robustness.attacks import TRUNK_TARGET, fgsm_attack, pgd_attack, pixels_to_unit
from mtmnv3.studies.robustness.spec import ATTACK_METHODS, DEFAULT_PGD_STEPS

__all__ = [
    "Batch",
    "RobustnessStudy",
    "SequenceHook",
    "WorkerError",
    "check_workers",
    "collect_batches",
    "corrupt_batch",
    "corruption_ids",
]

Batch = tuple[list[Tensor], list[MultiTaskDataSample]]
SequenceHook = Callable[[Sequence[MultiTaskDataSample]], None]


# ---- corrupting a collated batch ----------------------------------------------------------------
def corruption_ids(data_samples: Sequence[MultiTaskDataSample]) -> tuple[np.ndarray, np.ndarray]:
    """The ``(video_ids, frame_ids)`` streams of a batch, as ``CorruptFrames`` keys them.

    Frames of a video (``video_id >= 0``) use ``(video_id, frame_id)``; a still
    image uses ``(still_image_video_id(img_id), 0)``.
    """
    vids, fids = [], []
    for sample in data_samples:
        meta = sample.metainfo
        vid = int(meta.get("video_id", -1))
        if vid >= 0:
            vids.append(vid)
            fids.append(int(meta.get("frame_id", 0)))
        else:
            vids.append(still_image_video_id(meta.get("img_id", 0)))
            fids.append(0)
    return np.asarray(vids, np.int64), np.asarray(fids, np.int64)


class WorkerError(RuntimeError):
    """A forked robustness worker failed or died; the message carries its traceback."""


class _QueueBar:
    """The two progress-bar calls :meth:`RobustnessStudy._run` makes, sent to the parent."""

    def __init__(self, messages: Any) -> None:
        self.messages = messages

    def update(self, n: int = 1) -> None:
        self.messages.put(("step", n))

    def set_postfix_str(self, text: str) -> None:
        self.messages.put(("postfix", text))


def check_workers(workers: Any, device: torch.device | str) -> int:
    """``workers`` as a positive int; more than one needs the CPU and the fork start method."""
    import multiprocessing as mp

    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a positive int, got {workers!r}")
    if workers > 1:
        if torch.device(device).type != "cpu":
            raise ValueError(f"workers > 1 runs forked CPU processes; got device {str(device)!r}")
        if "fork" not in mp.get_all_start_methods():
            raise ValueError("workers > 1 needs the 'fork' start method, which this platform lacks")
    return workers


def corrupt_batch(
    inputs: Sequence[Tensor],
    data_samples: Sequence[MultiTaskDataSample],
    name: str,
    severity: int,
    seed: int = 0,
) -> list[Tensor]:
    """Corrupt a collated batch (``pseudo_collate``'s list of uint8 ``(3, H, W)``).

    Images of one size are corrupted together with one vectorised call.

    Args:
        inputs: uint8 ``(3, H, W)`` images (any device).
        data_samples: their samples (``video_id``, ``frame_id``, ``img_id`` metainfo).
        name: corruption family.
        severity: 1..5.
        seed: base seed of the corruption streams.

    Returns:
        The corrupted images, same order, shapes and device.
    """
    if len(inputs) != len(data_samples):
        raise ValueError(f"got {len(inputs)} images but {len(data_samples)} data samples")
    vids, fids = corruption_ids(data_samples)
    out: list[Tensor | None] = [None] * len(inputs)
    by_shape: dict[tuple[int, ...], list[int]] = {}
    for i, img in enumerate(inputs):
        by_shape.setdefault(tuple(img.shape), []).append(i)
    for idx in by_shape.values():
        batch = torch.stack([inputs[i] for i in idx])
        shifted = corrupt(batch, name, severity, seed, video_ids=vids[idx], frame_ids=fids[idx])
        for j, i in enumerate(idx):
            out[i] = shifted[j]
    return out  # type: ignore[return-value]


# ---- the study -------------------------------------------------------------------------------------
def collect_batches(
    dataloader: Iterable[dict], max_samples: int | None = None, whole_videos: bool = False
) -> list[Batch]:
    """Load the test batches once (``pseudo_collate`` dicts) and keep them in memory.

    With ``max_samples``, keep that many samples spread evenly over the split
    (every k-th), so a quick run still sees every video and domain. With
    ``whole_videos`` (tracking needs every frame of a video), keep whole
    videos instead, spread evenly over the split, as many as fit in
    ``max_samples`` frames (at least one).
    """
    batches = [(list(b["inputs"]), list(b["data_samples"])) for b in dataloader]
    if max_samples is None:
        return batches
    samples = [s for _, ss in batches for s in ss]
    total = len(samples)
    if whole_videos:
        videos = [int(s.metainfo.get("video_id", -1)) for s in samples]
        order = list(dict.fromkeys(videos))  # videos in split order
        sizes = Counter(videos)
        wanted = max(1, min(len(order), int(max_samples // (total / len(order)))))
        chosen: set[int] = set()
        budget = max_samples
        for k in np.unique(np.linspace(0, len(order) - 1, wanted).round().astype(int)):
            if not chosen or sizes[order[k]] <= budget:
                chosen.add(order[k])
                budget -= sizes[order[k]]
        keep = {i for i, v in enumerate(videos) if v in chosen}
    else:
        keep = set(np.unique(np.linspace(0, total - 1, min(max_samples, total)).round().astype(int)).tolist())
    out, i = [], 0
    for inputs, samples in batches:
        sel = [j for j in range(len(samples)) if i + j in keep]
        i += len(samples)
        if sel:
            out.append(([inputs[j] for j in sel], [samples[j] for j in sel]))
    return out


@dataclass
class RobustnessStudy:
    """Evaluate one model on cached test batches under corruptions and attacks.

    Args:
        model: a ``MultiTaskPerceptor`` (weights loaded; evaluated in eval mode).
        batches: the test batches (:func:`collect_batches`).
        evaluator: mmengine ``Evaluator`` of the config's test metrics (its
            ``dataset_meta`` set to the dataset's metainfo).
        seed: base seed of the corruption streams and the PGD random starts.
        sequence_hook_factory: for tracking metrics: returns a fresh callback
            per condition, called with each predicted batch in order (see the
            module docstring).
        progress: show a tqdm progress bar.
        workers: corruption conditions run in this many forked processes, each
            with its share of torch's threads (CPU only). The tracker, the
            metrics and the decoding are single-threaded Python; two processes
            on two cores keep both busy (see :meth:`run_corruptions`).
    """

    model: nn.Module
    batches: list[Batch]
    evaluator: Evaluator
    seed: int = 0
    sequence_hook_factory: Callable[[], SequenceHook] | None = None
    progress: bool = True
    workers: int = 1

    def __post_init__(self) -> None:
        check_workers(self.workers, self._device())

    @property
    def num_samples(self) -> int:
        return sum(len(s) for _, s in self.batches)

    def _run(
        self, name: str, transform: Callable[[int, list[Tensor], list[MultiTaskDataSample]], Any], bar: tqdm
    ) -> dict[str, float]:
        """Predict every batch (inputs from ``transform``) and evaluate all metrics."""
        self.model.eval()
        hook = self.sequence_hook_factory() if self.sequence_hook_factory is not None else None
        bar.set_postfix_str(name)
        for b, (inputs, samples) in enumerate(self.batches):
            samples = [s.clone() for s in samples]  # predictions never leak between conditions
            batch_inputs = transform(b, inputs, samples)
            with torch.no_grad():
                outputs = self._predict(batch_inputs, samples)
            if hook is not None:
                hook(outputs)
            self.evaluator.process(data_samples=outputs, data_batch=dict(inputs=batch_inputs))
            bar.update(1)
        return {k: float(v) for k, v in self.evaluator.evaluate(self.num_samples).items()}

    def _predict(self, inputs: list[Tensor] | Tensor, samples: list[MultiTaskDataSample]) -> list:
        """``model.test_step``; with a plain ``ImgDataPreprocessor`` on the CPU, only the
        images go through it (its ``cast_data`` would rebuild every sample to move it
        nowhere, a cost that grows with the split)."""
        pre = getattr(self.model, "data_preprocessor", None)
        if self._device().type == "cpu" and type(pre) is ImgDataPreprocessor:
            data = pre(dict(inputs=inputs), False)
            return self.model(data["inputs"], samples, mode="predict")
        return self.model.test_step(dict(inputs=inputs, data_samples=samples))

    def _device(self) -> torch.device:
        return next(self.model.parameters()).device

    def run_corruptions(self, corruptions: Sequence[str], severities: Sequence[int]) -> dict[str, Any]:
        """Clean and per (corruption, severity) metrics, with timing.

        With ``workers > 1`` forked worker processes (which share the cached
        batches copy-on-write) take the conditions one at a time from a shared
        queue, each as soon as it is free. A condition's metrics equal one
        process's at the same number of torch threads; at another thread count
        the convs round differently, which can move a metric by a detection or
        a track switch.

        Returns:
            ``{'clean': {...}, 'corruptions': {name: {str(severity): {...}}},
            'timing': {'clean_s', 'corruptions_s', 'per_condition_s', 'wall_s',
            'workers'}}``; per-condition times are each condition's own
            (in its worker), ``wall_s`` the whole run's.
        """
        conditions: list[tuple[str, str | None, int | None]] = [("clean", None, None)]
        conditions += [(f"{name}@{sev}", name, sev) for name in corruptions for sev in severities]
        bar = tqdm(
            total=len(self.batches) * len(conditions),
            desc="robustness",
            unit="batch",
            disable=not self.progress,
            dynamic_ncols=True,
        )
        t0 = time.perf_counter()
        try:
            if self.workers > 1 and len(conditions) > 1:
                done = self._run_in_workers(conditions, bar)
            else:
                done = {c[0]: self._run_condition(*c, bar) for c in conditions}
        finally:
            bar.close()
        wall = time.perf_counter() - t0
        results: dict[str, dict[str, dict[str, float]]] = {}
        for key, name, sev in conditions[1:]:
            results.setdefault(name, {})[str(sev)] = done[key][0]
        per_condition = {key: done[key][1] for key, _, _ in conditions}
        return dict(
            clean=done["clean"][0],
            corruptions=results,
            timing=dict(
                clean_s=per_condition["clean"],
                corruptions_s=sum(v for k, v in per_condition.items() if k != "clean"),
                per_condition_s=per_condition,
                wall_s=wall,
                workers=min(self.workers, len(conditions)),
            ),
        )

    def _run_condition(
        self, key: str, name: str | None, severity: int | None, bar: Any
    ) -> tuple[dict[str, float], float]:
        """One condition's metrics (clean when ``name`` is None) and its seconds."""
        t = time.perf_counter()
        if name is None:
            metrics = self._run(key, lambda b, x, s: x, bar)
        else:
            device = self._device()

            def shift(b: int, x: list[Tensor], s: list) -> list[Tensor]:
                return corrupt_batch([i.to(device) for i in x], s, name, severity, self.seed)

            metrics = self._run(key, shift, bar)
        return metrics, time.perf_counter() - t

    def _run_in_workers(
        self, conditions: list[tuple[str, str | None, int | None]], bar: Any
    ) -> dict[str, tuple[dict[str, float], float]]:
        """Run the conditions in forked processes; progress and results come back on a queue."""
        import multiprocessing as mp
        import queue as queue_mod

        ctx = mp.get_context("fork")
        messages, tasks = ctx.Queue(), ctx.Queue()
        workers = min(self.workers, len(conditions))
        threads = max(1, torch.get_num_threads() // workers)
        # A shared task queue: each worker takes the next condition when it is free, so a slow
        # family (shot noise, defocus blur) does not leave one worker running alone at the end.
        for condition in conditions:
            tasks.put(condition)
        for _ in range(workers):
            tasks.put(None)
        procs = [
            ctx.Process(target=self._worker, args=(tasks, messages, threads), daemon=True)
            for _ in range(workers)
        ]
        for proc in procs:
            proc.start()
        done: dict[str, tuple[dict[str, float], float]] = {}
        finished, failure = 0, None
        try:
            while finished < workers:
                try:
                    kind, *payload = messages.get(timeout=1.0)
                except queue_mod.Empty:
                    dead = [p for p in procs if not p.is_alive() and p.exitcode not in (0, None)]
                    if dead and messages.empty():
                        raise WorkerError(
                            f"a robustness worker died (exit code {dead[0].exitcode}; out of memory?)"
                        ) from None
                    continue
                if kind == "step":
                    bar.update(payload[0])
                elif kind == "postfix":
                    bar.set_postfix_str(payload[0])
                elif kind == "result":
                    done[payload[0]] = (payload[1], payload[2])
                elif kind == "error":
                    failure = payload[0]
                    break  # the other workers' conditions are of no use now
                elif kind == "done":
                    finished += 1
        finally:
            for proc in procs:  # all said "done" unless something failed: then stop the rest
                proc.join(timeout=5 if finished == workers else 0)
                if proc.is_alive():
                    proc.terminate()
                    proc.join()
        if failure is not None:
            raise WorkerError(f"a robustness worker failed: {failure}")
        return done

    def _worker(self, tasks: Any, messages: Any, threads: int) -> None:
        """Body of one forked worker: run conditions from ``tasks`` until its ``None``, report over ``messages``."""
        import traceback

        try:
            torch.set_num_threads(threads)
            bar = _QueueBar(messages)
            for condition in iter(tasks.get, None):
                metrics, seconds = self._run_condition(*condition, bar)
                messages.put(("result", condition[0], metrics, seconds))
        except BaseException as e:  # reported to the parent, which raises
            messages.put(("error", f"{type(e).__name__}: {e}\n{traceback.format_exc()}"))
        finally:
            messages.put(("done",))

    def run_attacks(
        self,
        eps: Sequence[tuple[str, float]],
        methods: Sequence[str] = ATTACK_METHODS,
        targets: Sequence[str] | None = None,
        pgd_steps: int = DEFAULT_PGD_STEPS,
    ) -> dict[str, Any]:
        """Every task's metric under FGSM / PGD against each head and the trunk.

        The adversarial images are fed to the model as float pixels (no
        re-quantisation to uint8), so the L-infinity budget is exact.

        Returns:
            ``{method: {eps_label: {target: {metric: value}}}, 'eps': {label: value},
            'pgd_steps': n, 'targets': [...]}`` (clean metrics are the corruption run's).
        """
        unknown = [m for m in methods if m not in ATTACK_METHODS]
        if unknown:
            raise ValueError(f"unknown attack method(s) {unknown}; known: {list(ATTACK_METHODS)}")
        targets = [*self.model.heads, TRUNK_TARGET] if targets is None else list(targets)
        device = self._device()
        steps = len(self.batches) * len(eps) * len(methods) * len(targets)
        bar = tqdm(total=steps, desc="attacks", unit="batch", disable=not self.progress, dynamic_ncols=True)
        out: dict[str, Any] = {m: {} for m in methods}
        try:
            for method in methods:
                for label, value in eps:
                    for target in targets:

                        def attack(
                            b: int,
                            x: list[Tensor],
                            s: list,
                            method: str = method,
                            value: float = value,
                            target: str = target,
                        ) -> Tensor:
                            if len({tuple(i.shape) for i in x}) != 1:
                                raise ValueError("attack mode needs the images of a batch to share one size")
                            x01 = pixels_to_unit(torch.stack(x).to(device))
                            if method == "fgsm" and target == TRUNK_TARGET:
                                # The feature distance has zero gradient at the clean image, so the trunk
                                # FGSM starts at a random point of the ball (R+FGSM, Tramer et al., ICLR 2018).
                                adv = pgd_attack(
                                    self.model,
                                    x01,
                                    s,
                                    target=target,
                                    eps=value,
                                    alpha=value,
                                    steps=1,
                                    seed=self.seed + b,
                                )
                            elif method == "fgsm":
                                adv = fgsm_attack(self.model, x01, s, target=target, eps=value)
                            else:
                                adv = pgd_attack(
                                    self.model,
                                    x01,
                                    s,
                                    target=target,
                                    eps=value,
                                    steps=pgd_steps,
                                    seed=self.seed + b,
                                )
                            return adv * 255.0

                        out[method].setdefault(label, {})[target] = self._run(
                            f"{method} {label} -> {target}", attack, bar
                        )
        finally:
            bar.close()
        out.update(eps={label: value for label, value in eps}, pgd_steps=pgd_steps, targets=targets)
        return out
