"""Deployed files for the command line: export to a runtime with a parity check, and the checks a file must pass.

``mtmnv3 export`` and ``mtmnv3 test --backend`` share these: a model is
exported for one runtime with that runtime's own tools (int8 with its own
quantizer: ONNX Runtime's static QDQ, ExecuTorch's XNNPACKQuantizer through
PT2E, NNCF for OpenVINO), the file's raw outputs are compared with PyTorch's
on held-out frames, and the sidecar gains the parity, the precision and the
config's hash. A failed step leaves no file behind.
"""

from __future__ import annotations

import copy
import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mtmnv3.core.fileio import atomic_write_json
from mtmnv3.runtime.export_meta import config_hash, load_export_meta, sidecar_path, size_text
from mtmnv3.runtime.frame_runner import EXPORT_SUFFIXES, export_for_backend
from mtmnv3.runtime.sessions import check_backend, open_session

__all__ = [
    "FORMATS",
    "PARITY_REL_TOL",
    "DeployError",
    "check_model_file",
    "deployed_raw_fn",
    "export_deployed",
    "held_out_frames",
    "output_parity",
    "with_input_shape",
]

#: ``--format`` -> the runtime that runs the file.
FORMATS = {"onnx": "onnxruntime", "executorch": "executorch", "openvino": "openvino"}
#: Largest raw-output error allowed, relative to the output's range over the parity frames. fp32:
#: the runtimes reorder float sums, nothing more. int8: a loose bound that a broken quantization
#: (wrong scales, a dropped output) fails; the task metrics of ``mtmnv3 test --backend`` measure the rest.
PARITY_REL_TOL = {"fp32": 1e-4, "int8": 0.25}
#: Held-out frames compared against PyTorch by default.
DEFAULT_PARITY_FRAMES = 8
#: Real frames calibrating int8 by default.
DEFAULT_CALIB_IMAGES = 64


class DeployError(RuntimeError):
    """A deployed file failed its parity check or does not fit the config."""


def _size_hw(size: int | Sequence[int]) -> tuple[int, int]:
    """A square ``int`` or ``(height, width)`` -> ``(height, width)``."""
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        return int(size), int(size)
    h, w = size
    return int(h), int(w)


def with_input_shape(cfg: Any, size_hw: tuple[int, int]) -> Any:
    """A copy of ``cfg`` whose evaluation pipelines letterbox into ``size_hw`` (``(height, width)``).

    The held-out and calibration frames go through the config's test pipeline;
    an export at another shape than the pipeline's gets them at its own shape.
    """
    from mtmnv3.engine import dataset_parts

    cfg = copy.deepcopy(cfg)
    for key in ("val_dataloader", "test_dataloader"):
        loader = cfg.get(key)
        if loader is None or "dataset" not in loader:
            continue
        for dataset in [loader["dataset"], *dataset_parts(loader["dataset"])]:
            for t in dataset.get("pipeline") or ():
                if isinstance(t, Mapping) and t.get("type") == "Letterbox":
                    t["size"] = (size_hw[1], size_hw[0])
                    t["keep_aspect"] = False
    return cfg


def held_out_frames(
    cfg: Any, model: nn.Module, num: int, size: int | Sequence[int], split: str = "test", seed: int = 0
) -> tuple[list[np.ndarray], str]:
    """``num`` preprocessed frames of a split (normalised ``float32 (1, 3, H, W)``) and where they came from.

    ``size`` is a square ``int`` or ``(height, width)``: the frames are
    letterboxed into it (aspect kept, padded) by the config's test pipeline. A
    config without that split's data (a model-only config) gets seeded random
    inputs of ``size`` instead, and the source says ``'random'``.
    """
    h, w = _size_hw(size)
    if cfg.get(f"{split}_dataloader") is None:
        rng = np.random.default_rng(seed)
        return [rng.standard_normal((1, 3, h, w)).astype(np.float32) for _ in range(num)], "random"
    from mtmnv3.studies.quantization import calibration_arrays

    frames = calibration_arrays(with_input_shape(cfg, (h, w)), model, num_samples=num, split=split, seed=seed)
    return frames, split


def output_parity(
    session: Any, model: nn.Module, frames: Sequence[np.ndarray]
) -> dict[str, dict[str, float]]:
    """Per raw output of a session: the largest absolute error against PyTorch, and relative to the output's range."""
    layout = session.meta["outputs"]
    heads = list(dict.fromkeys(o["head"] for o in layout))
    worst: dict[str, list[float]] = {o["name"]: [0.0, 0.0] for o in layout}
    for x in frames:
        with torch.no_grad():
            want = model.head_outputs(torch.from_numpy(x), heads)
        got = session.run(np.ascontiguousarray(x, np.float32))
        for o in layout:
            ref = (want[o["head"]] if o["key"] is None else want[o["head"]][o["key"]]).numpy()
            err = float(np.abs(got[o["name"]] - ref).max())
            span = float(ref.max() - ref.min())
            worst[o["name"]] = [max(worst[o["name"]][0], err), max(worst[o["name"]][1], span)]
    return {
        name: dict(max_abs=err, rel=err / span if span > 0 else (0.0 if err == 0 else math.inf))
        for name, (err, span) in worst.items()
    }


def export_deployed(
    model: nn.Module,
    fmt: str,
    out: str | os.PathLike,
    config: str | os.PathLike,
    cfg: Any,
    input_size: int | Sequence[int],
    heads: Sequence[str] | str | None = None,
    int8: bool = False,
    calib_images: int = DEFAULT_CALIB_IMAGES,
    parity_frames: int = DEFAULT_PARITY_FRAMES,
    export_options: Mapping[str, Any] | None = None,
    threads: int = 1,
    require_parity: bool = True,
) -> dict[str, Any]:
    """Export, check parity against PyTorch on held-out frames, then move the files into place.

    Args:
        model: the trained model (eval mode).
        fmt: ``'onnx'``, ``'executorch'`` or ``'openvino'``.
        out: the model file (``.onnx``, ``.pte`` or ``.xml``); the sidecar is ``<out>.json``.
        config: the config file (its hash goes into the sidecar).
        cfg: the loaded config (held-out and calibration frames come from its splits).
        input_size: the file's input shape: a square ``int`` or ``(height, width)``
            (the held-out and calibration frames are letterboxed into it).
        heads: head names to export (default all).
        int8: quantize with the runtime's own tools, calibrated on ``calib_images`` training frames.
        calib_images: calibration frames for int8.
        parity_frames: held-out (test split) frames compared against PyTorch.
        export_options: extra ONNX exporter options (``exporter``, ``opset``, ``dynamic_batch``, ``dynamic_size``).
        threads: runtime threads for the parity run.
        require_parity: refuse a file that fails the parity check (default); False writes
            it anyway, the sidecar's ``parity.passed`` saying it failed (studies that
            measure the file's task metrics, such as an int8 file of a briefly trained model).

    Returns:
        The final sidecar.

    Raises:
        ValueError: an unknown format, a suffix that does not match it, bad counts.
        ImportError: the runtime is not installed.
        DeployError: the parity check failed (nothing is written).
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; expected one of {sorted(FORMATS)}")
    backend = check_backend(FORMATS[fmt])
    out = Path(out)
    if out.suffix != EXPORT_SUFFIXES[backend]:
        raise ValueError(
            f"--format {fmt} writes a {EXPORT_SUFFIXES[backend]} file, got --out {os.fspath(out)!r}"
        )
    for name, value in (("calib_images", calib_images), ("parity_frames", parity_frames)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    precision = "int8" if int8 else "fp32"
    calibration = None
    if int8:
        if cfg.get("train_dataloader") is None:
            raise ValueError("int8 calibrates on real training frames; the config has no train_dataloader")
        calibration, _ = held_out_frames(cfg, model, calib_images, input_size, split="train")
    frames, source = held_out_frames(cfg, model, parity_frames, input_size, split="test")
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.") as tmp:
        staged = Path(tmp) / out.name
        _export_staged(model, backend, staged, heads, input_size, int8, calibration, export_options or {})
        meta = load_export_meta(staged)
        session = open_session(staged, threads)
        parity = output_parity(session, model, frames)
        tol = PARITY_REL_TOL[precision]
        failed = {n: p for n, p in parity.items() if not p["rel"] <= tol}
        meta.update(
            precision=precision,
            config_hash=config_hash(config),
            parity=dict(frames=len(frames), split=source, rel_tol=tol, outputs=parity, passed=not failed),
        )
        if failed and require_parity:
            raise DeployError(
                f"parity check failed: outputs {sorted(failed)} differ from PyTorch by more than "
                f"{tol:g} of their range ({ {n: round(p['rel'], 4) for n, p in failed.items()} }); nothing written"
            )
        atomic_write_json(sidecar_path(staged), meta)
        del session
        for item in sorted(Path(tmp).iterdir(), key=lambda p: p.name.endswith(".json")):
            os.replace(item, out.parent / item.name)  # the sidecar last: it marks a complete export
    return meta


def _export_staged(
    model: nn.Module,
    backend: str,
    path: Path,
    heads: Sequence[str] | str | None,
    input_size: int | Sequence[int],
    int8: bool,
    calibration: Sequence[np.ndarray] | None,
    export_options: Mapping[str, Any],
) -> None:
    """Write the file (and sidecar) at ``path``, int8 with the runtime's own quantizer."""
    if backend != "onnxruntime":
        if export_options:
            raise ValueError(f"{sorted(export_options)} are ONNX exporter options; {backend} takes none")
        export_for_backend(
            model, backend, path, heads=heads, input_size=input_size, int8=int8, calibration=calibration
        )
        return
    from mtmnv3.runtime.onnx_export import export_onnx

    if not int8:
        export_onnx(model, path, heads=heads, input_size=input_size, **export_options)
        return
    from mtmnv3.studies.quantization import quantize_onnx

    fp32 = path.with_name(path.stem + ".fp32.onnx")
    export_onnx(model, fp32, heads=heads, input_size=input_size, **export_options)
    quantize_onnx(fp32, path, calibration)
    fp32.unlink()
    sidecar_path(fp32).unlink()


def check_model_file(
    path: str | os.PathLike,
    config: str | os.PathLike,
    model: nn.Module,
    input_size: int | Sequence[int],
    asked_by: str = "the config's test size",
) -> dict:
    """The sidecar of a deployed file, after checking that it was made from this config and model.

    ``input_size`` is the input shape asked for (by ``asked_by``, named in the
    error): a square ``int`` or ``(height, width)``; a fixed-shape file must have
    exactly that shape (a dynamic-size file takes any).

    Raises:
        FileNotFoundError: the file or its sidecar is missing.
        DeployError: another config (hash), other heads or another input size; the message names both values.
    """
    meta = load_export_meta(path)
    want_hash = config_hash(config)
    if meta.get("config_hash") not in (None, want_hash):
        raise DeployError(
            f"{os.fspath(path)} was exported from another config: config hash {meta['config_hash'][:12]}..., "
            f"{os.fspath(config)} has {want_hash[:12]}..."
        )
    if meta.get("config_hash") is None:
        raise DeployError(f"{os.fspath(path)} records no config hash; export it with `mtmnv3 export`")
    file_heads = sorted(meta["heads"])
    if file_heads != sorted(model.heads):
        raise DeployError(
            f"{os.fspath(path)} has heads {file_heads}; the config's model has {sorted(model.heads)}"
        )
    size = list(meta["input"]["size"])
    want = list(_size_hw(input_size))
    if not meta["input"]["dynamic_size"] and size != want:
        raise DeployError(
            f"{os.fspath(path)} takes {size_text(size)} (WxH) inputs; {asked_by} is {size_text(want)} (WxH)"
        )
    return meta


def deployed_raw_fn(path: str | os.PathLike, threads: int = 1):
    """A deployed file as ``normalised (N, 3, H, W) Tensor -> raw tensors in layout order`` (for evaluation)."""
    session = open_session(path, threads)
    names = [o["name"] for o in session.meta["outputs"]]

    def run(images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = session.run(np.ascontiguousarray(images.detach().float().cpu().numpy()))
        return tuple(torch.from_numpy(np.asarray(out[n])) for n in names)

    return run, session.meta
