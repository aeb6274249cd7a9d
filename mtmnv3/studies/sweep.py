"""Trunks x seeds as training trials on Ray: each trial is one ``mtmnv3 train`` run in its own work dir.

A sweep expands configs x seeds into trials. Trial ``(config, seed)`` trains
in ``<work_dir>/<config stem>/seed<k>`` with ``randomness.seed=k`` and the
sweep's ``--cfg-options`` on top, as a normal ``python -m mtmnv3 train ...
--resume`` subprocess launched by a Ray task (one task per trial, reserving
``cpus_per_trial`` CPUs; the subprocess gets as many compute threads). Ray
schedules the tasks: on a local cluster started for the sweep (``num_cpus``
CPUs) by default, or on an existing cluster (``address``). On a cluster of
several machines the work dir and the data must be on storage every node
sees, and the package installed on each.

Each trial leaves ``sweep_trial.json`` in its work dir: the config, seed,
options and a fingerprint of the resolved config, its state (``running``,
then ``done`` with the final checkpoint) and the log path. Rerunning a sweep:

* a trial whose record says ``done`` for the same fingerprint and whose final
  checkpoint exists is reused, not retrained (no Ray task is started for it;
  a sweep with nothing left to train does not start Ray at all);
* an interrupted trial (a ``running`` record) trains again with ``--resume``:
  mmengine resumes from the work dir's last checkpoint;
* a work dir that holds a trial of another config or other options is a
  failure of that trial (its record is left alone), not silently overwritten.

A trial that fails (training exits non-zero, the final checkpoint is
missing, the Ray worker dies) does not stop the others; the sweep reports each
failure with its log (``<trial work dir>/train.log``: the training process's
stdout and stderr) and the summary ``<work_dir>/sweep.json`` lists every trial.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mtmnv3.core.fileio import atomic_write_json

__all__ = [
    "RAY_INSTALL_HINT",
    "SUMMARY_NAME",
    "TRIAL_LOG",
    "TRIAL_RECORD",
    "Trial",
    "TrialResult",
    "failures",
    "format_results",
    "import_ray",
    "parse_options",
    "plan_trials",
    "results_by_config",
    "run_sweep",
    "train_trial",
    "trial_state",
]

#: The per-trial record in each trial's work dir.
TRIAL_RECORD = "sweep_trial.json"
#: The training process's stdout and stderr, in each trial's work dir.
TRIAL_LOG = "train.log"
#: The sweep's summary, in the sweep's work dir.
SUMMARY_NAME = "sweep.json"
#: How to install the optional Ray dependency.
RAY_INSTALL_HINT = "pip install -c requirements/constraints.txt -e '.[sweep]' (the `sweep` extra: ray)"
#: Object store of a local cluster started for a sweep: trials pass only small records through it.
LOCAL_OBJECT_STORE_BYTES = 128 * 1024 * 1024


@dataclass(frozen=True)
class Trial:
    """One training run of a sweep.

    Attributes:
        config: the config file (absolute path).
        seed: ``randomness.seed`` of the run.
        work_dir: the trial's work dir (absolute path).
        cfg_options: ``key=value`` overrides, the seed's last.
        max_iters: the resolved schedule's length (the final checkpoint is ``iter_<max_iters>.pth``).
        fingerprint: SHA-256 of the resolved config text (config file, its bases and the options).
        error: why the trial cannot run (the config does not load), or None.
    """

    config: str
    seed: int
    work_dir: str
    cfg_options: tuple[str, ...]
    max_iters: int | None
    fingerprint: str | None
    error: str | None = None

    @property
    def name(self) -> str:
        """``<config stem>/seed<k>``."""
        return f"{Path(self.config).stem}/seed{self.seed}"

    @property
    def log(self) -> str:
        return os.path.join(self.work_dir, TRIAL_LOG)

    @property
    def checkpoint(self) -> str | None:
        """The final checkpoint the run leaves (None when the config did not load)."""
        return None if self.max_iters is None else os.path.join(self.work_dir, f"iter_{self.max_iters}.pth")


@dataclass
class TrialResult:
    """What became of a trial: ``status`` is ``'reused'``, ``'trained'``, ``'resumed'`` or ``'failed'``."""

    name: str
    config: str
    seed: int
    work_dir: str
    status: str
    log: str
    checkpoint: str | None = None
    wall_s: float = 0.0
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status != "failed"


def import_ray() -> Any:
    """``import ray``, or an ImportError naming the package and how to install it."""
    try:
        import ray
    except ImportError as e:
        raise ImportError(
            f"the sweep runs on Ray, and the package 'ray' is not installed: {RAY_INSTALL_HINT}"
        ) from e
    return ray


def _stem_dirs(configs: Sequence[str | os.PathLike]) -> dict[str, str]:
    """Config path -> its stem; two configs with one stem would share work dirs."""
    stems: dict[str, str] = {}
    for config in configs:
        stem = Path(config).stem
        other = next((c for c, s in stems.items() if s == stem), None)
        if other is not None and Path(other).resolve() != Path(config).resolve():
            raise ValueError(
                f"configs {other} and {config} share the stem {stem!r}: their trials would share "
                f"<work-dir>/{stem}; rename one"
            )
        stems[os.fspath(config)] = stem
    return stems


def plan_trials(
    configs: Sequence[str | os.PathLike],
    seeds: Sequence[int],
    work_dir: str | os.PathLike,
    cfg_options: Sequence[str] = (),
) -> list[Trial]:
    """Configs x seeds as trials (config-major order).

    A config that does not load becomes a trial carrying the error, so that
    the sweep reports it with the others instead of stopping.

    Raises:
        ValueError: no configs or seeds, repeated or negative seeds, a missing
            config file, two configs with one stem, an option that is not ``key=value``.
    """
    from mtmnv3.engine import load_config

    if not configs:
        raise ValueError("a sweep needs at least one config")
    seeds = list(seeds)
    if not seeds:
        raise ValueError("a sweep needs at least one seed")
    bad = [s for s in seeds if isinstance(s, bool) or not isinstance(s, int) or s < 0]
    if bad or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be distinct integers >= 0, got {seeds}")
    for config in configs:
        if not os.path.isfile(config):
            raise ValueError(f"config not found: {config}")
    options = list(cfg_options)
    for option in options:
        if "=" not in option or option.startswith("="):
            raise ValueError(f"--cfg-options entries must be key=value, got {option!r}")
        if option.split("=", 1)[0] == "randomness.seed":
            raise ValueError("randomness.seed is the sweep's --seeds; leave it out of --cfg-options")
    stems = _stem_dirs(configs)
    trials = []
    for config in configs:
        for seed in seeds:
            opts = (*options, f"randomness.seed={seed}")
            max_iters, fingerprint, error = None, None, None
            try:
                cfg = load_config(config, parse_options(opts))
                max_iters = int(cfg.train_cfg.max_iters)
                fingerprint = hashlib.sha256(cfg.pretty_text.encode()).hexdigest()
            except Exception as e:  # noqa: BLE001 - a config that does not load fails its trials, not the sweep
                error = f"config does not load: {type(e).__name__}: {e}"
            trials.append(
                Trial(
                    config=os.path.abspath(config),
                    seed=seed,
                    work_dir=os.path.abspath(os.path.join(work_dir, stems[os.fspath(config)], f"seed{seed}")),
                    cfg_options=opts,
                    max_iters=max_iters,
                    fingerprint=fingerprint,
                    error=error,
                )
            )
    return trials


def parse_options(options: Sequence[str]) -> dict[str, Any]:
    """``key=value`` strings parsed as ``--cfg-options`` parses them."""
    import argparse

    from mtmnv3.engine import DictAction

    namespace = argparse.Namespace()
    DictAction(option_strings=["--cfg-options"], dest="cfg_options")(None, namespace, list(options))
    return dict(namespace.cfg_options or {})


def _read_record(trial: Trial) -> dict[str, Any] | None:
    import json

    path = os.path.join(trial.work_dir, TRIAL_RECORD)
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            record = json.load(f)
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def trial_state(trial: Trial) -> tuple[str, str | None]:
    """``(state, reason)``: ``'done'`` (reuse it), ``'run'`` (train, resuming if it has checkpoints)
    or ``'conflict'`` (the work dir holds another config's or options' trial; the reason says which)."""
    record = _read_record(trial)
    if record is None:
        return "run", None
    if record.get("fingerprint") != trial.fingerprint:
        return "conflict", (
            f"{trial.work_dir} holds a trial of another config or other options "
            f"({record.get('config')}, options {record.get('cfg_options')}); "
            "remove that folder or give another --work-dir"
        )
    if record.get("state") == "done" and trial.checkpoint and os.path.isfile(trial.checkpoint):
        return "done", None
    return "run", None


def _write_record(trial: Trial, state: str, **extra: Any) -> None:
    record = dict(
        config=trial.config,
        seed=trial.seed,
        cfg_options=list(trial.cfg_options),
        fingerprint=trial.fingerprint,
        max_iters=trial.max_iters,
        log=trial.log,
        state=state,
        **extra,
    )
    atomic_write_json(os.path.join(trial.work_dir, TRIAL_RECORD), record)


def train_trial(trial: Trial, threads: int, cwd: str | None = None) -> dict[str, Any]:
    """Run one trial's ``mtmnv3 train`` (resuming from its last checkpoint if it has one); the Ray task body.

    Returns:
        ``{'rc', 'resumed', 'wall_s', 'checkpoint' (or None), 'error' (or None)}``.
    """
    os.makedirs(trial.work_dir, exist_ok=True)
    resumed = os.path.isfile(os.path.join(trial.work_dir, "last_checkpoint"))
    _write_record(trial, "running")
    cmd = [sys.executable, "-m", "mtmnv3", "train", trial.config, "--work-dir", trial.work_dir, "--resume"]
    cmd += ["--cfg-options", *trial.cfg_options]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONUNBUFFERED": "1"}
    t0 = time.perf_counter()
    with open(trial.log, "a", encoding="utf-8") as log:
        log.write(f"$ {' '.join(cmd)}\n")
        log.flush()
        rc = subprocess.run(
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd if cwd and os.path.isdir(cwd) else None,
        ).returncode
    wall = time.perf_counter() - t0
    error = None
    if rc != 0:
        error = f"training exited with status {rc}: {_last_error(trial.log)}"
    elif not (trial.checkpoint and os.path.isfile(trial.checkpoint)):
        error = f"training exited with status 0 but left no final checkpoint {trial.checkpoint}"
    if error is None:
        _write_record(trial, "done", checkpoint=trial.checkpoint, wall_s=wall)
    return dict(
        rc=rc,
        resumed=resumed,
        wall_s=wall,
        checkpoint=trial.checkpoint if error is None else None,
        error=error,
    )


def _last_error(log: str, max_chars: int = 300) -> str:
    """The log's last line that looks like an error (else its last non-empty line)."""
    try:
        lines = [line.strip() for line in Path(log).read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return "(no log)"
    for line in reversed(lines):
        if line.startswith("error:") or "Error" in line.split(":", 1)[0]:
            return line[:max_chars]
    return lines[-1][:max_chars] if lines else "(empty log)"


def _fail(trial: Trial, reason: str) -> TrialResult:
    os.makedirs(trial.work_dir, exist_ok=True)
    with open(trial.log, "a", encoding="utf-8") as f:
        f.write(f"error: {reason}\n")
    return TrialResult(
        trial.name, trial.config, trial.seed, trial.work_dir, "failed", trial.log, error=reason
    )


def _start_ray(ray: Any, address: str | None, num_cpus: int | None) -> None:
    """Join ``address``, or start a local cluster of ``num_cpus`` CPUs (default: this machine's)."""
    kwargs: dict[str, Any] = dict(include_dashboard=False, log_to_driver=False, configure_logging=False)
    if address is not None:
        ray.init(address=address, **kwargs)
        return
    ray.init(
        num_cpus=num_cpus or os.cpu_count() or 1,
        object_store_memory=LOCAL_OBJECT_STORE_BYTES,
        **kwargs,
    )


def run_sweep(
    configs: Sequence[str | os.PathLike],
    seeds: Sequence[int],
    work_dir: str | os.PathLike,
    cfg_options: Sequence[str] = (),
    address: str | None = None,
    num_cpus: int | None = None,
    cpus_per_trial: int = 1,
    on_result: Callable[[TrialResult], None] | None = None,
) -> list[TrialResult]:
    """Train every config x seed as a Ray task (reusing finished trials), and write ``sweep.json``.

    Args:
        configs: config files (their stems name the trials' folders).
        seeds: training seeds (``randomness.seed``).
        work_dir: the sweep's folder; trial ``(config, k)`` trains in ``<work_dir>/<stem>/seed<k>``.
        cfg_options: ``key=value`` overrides for every trial (``--cfg-options``).
        address: an existing Ray cluster to join (``ray.init(address=...)``), e.g.
            ``'auto'`` or ``'ray://host:10001'``; None starts a local cluster.
        num_cpus: CPUs of the local cluster (default: this machine's); not with ``address``.
        cpus_per_trial: CPUs each trial reserves, and its training threads.
        on_result: called with each trial's result as it is known (progress).

    Returns:
        One result per trial, in plan order.

    Raises:
        ValueError: bad arguments (see :func:`plan_trials`), bad CPU counts.
        ImportError: Ray is not installed (and some trial needs training).
    """
    if isinstance(cpus_per_trial, bool) or not isinstance(cpus_per_trial, int) or cpus_per_trial < 1:
        raise ValueError(f"cpus_per_trial must be an int >= 1, got {cpus_per_trial!r}")
    if num_cpus is not None:
        if address is not None:
            raise ValueError("num_cpus sizes a local cluster; an existing cluster (address) has its own")
        if isinstance(num_cpus, bool) or not isinstance(num_cpus, int) or num_cpus < cpus_per_trial:
            raise ValueError(
                f"num_cpus must be an int >= cpus_per_trial ({cpus_per_trial}), got {num_cpus!r}"
            )
    trials = plan_trials(configs, seeds, work_dir, cfg_options)
    report = on_result or (lambda result: None)
    results: dict[str, TrialResult] = {}
    pending: list[Trial] = []
    for trial in trials:
        state, reason = ("failed", trial.error) if trial.error else trial_state(trial)
        if state in ("failed", "conflict"):
            results[trial.name] = _fail(trial, reason or "")
            report(results[trial.name])
        elif state == "done":
            record = _read_record(trial) or {}
            results[trial.name] = TrialResult(
                trial.name, trial.config, trial.seed, trial.work_dir, "reused", trial.log,
                checkpoint=trial.checkpoint, wall_s=float(record.get("wall_s", 0.0)),
            )  # fmt: skip
            report(results[trial.name])
        else:
            pending.append(trial)
    if pending:
        results.update(_run_on_ray(pending, address, num_cpus, cpus_per_trial, report))
    ordered = [results[t.name] for t in trials]
    atomic_write_json(
        os.path.join(work_dir, SUMMARY_NAME),
        dict(
            seeds=list(seeds),
            configs=[os.fspath(c) for c in configs],
            cfg_options=list(cfg_options),
            address=address,
            cpus_per_trial=cpus_per_trial,
            trials=[asdict(r) for r in ordered],
        ),
    )
    return ordered


def _run_on_ray(
    trials: Sequence[Trial],
    address: str | None,
    num_cpus: int | None,
    cpus_per_trial: int,
    report: Callable[[TrialResult], None],
) -> dict[str, TrialResult]:
    """One Ray task per trial; results as they finish. A worker that dies fails its trial only."""
    ray = import_ray()
    started = not ray.is_initialized()
    if started:
        _start_ray(ray, address, num_cpus)
    try:
        cpus = ray.cluster_resources().get("CPU", 0)
        if cpus < cpus_per_trial:
            raise ValueError(f"cpus_per_trial={cpus_per_trial} exceeds the cluster's {cpus:g} CPUs")
        task = ray.remote(num_cpus=cpus_per_trial, max_retries=0)(train_trial)
        refs = {task.remote(t, cpus_per_trial, os.getcwd()): t for t in trials}
        out: dict[str, TrialResult] = {}
        waiting = list(refs)
        while waiting:
            done, waiting = ray.wait(waiting, num_returns=1)
            trial = refs[done[0]]
            try:
                got = ray.get(done[0])
            except Exception as e:  # noqa: BLE001 - a dead worker or a task error fails this trial only
                got = dict(rc=None, resumed=False, wall_s=0.0, checkpoint=None, error=f"Ray task failed: {e}")
            if got["error"] is not None:
                result = _fail(trial, got["error"])
                result.wall_s = got["wall_s"]
            else:
                result = TrialResult(
                    trial.name, trial.config, trial.seed, trial.work_dir,
                    "resumed" if got["resumed"] else "trained", trial.log,
                    checkpoint=got["checkpoint"], wall_s=got["wall_s"],
                )  # fmt: skip
            out[trial.name] = result
            report(result)
        return out
    finally:
        if started:
            ray.shutdown()


def format_results(results: Sequence[TrialResult]) -> str:
    """One line per trial: status, name, wall time, checkpoint or error and log."""
    lines = []
    for r in results:
        if r.ok:
            lines.append(f"{r.status:8s} {r.name}  {r.wall_s:.0f} s  {r.checkpoint}")
        else:
            lines.append(f"FAILED   {r.name}: {r.error}\n         log: {r.log}")
    return "\n".join(lines)


def failures(results: Sequence[TrialResult]) -> list[TrialResult]:
    return [r for r in results if not r.ok]


def results_by_config(results: Sequence[TrialResult]) -> Mapping[str, list[TrialResult]]:
    """Results grouped by config path (plan order kept)."""
    out: dict[str, list[TrialResult]] = {}
    for r in results:
        out.setdefault(r.config, []).append(r)
    return out
