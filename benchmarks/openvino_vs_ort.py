"""OpenVINO against ONNX Runtime on one CPU: which model, export route and precision make the difference.

Three graphs at the same input size, batch 1: torchvision's
``mobilenet_v3_small`` (the reference of the runtime comparison in the
environment notes), the 3-task model's MobileNetV3 trunk alone (last stage
out) and the whole 3-task model (raw head tensors, exported through
:func:`~mtmnv3.runtime.onnx_export.export_onnx` and
:func:`~mtmnv3.runtime.openvino_runtime.export_openvino`). Each runs on

* ``ort``: ONNX Runtime fp32 (:func:`~mtmnv3.runtime.ort_runtime.make_session`,
  as the deployed sessions open it),
* ``ov_pt``: OpenVINO fp32 of the IR converted by OpenVINO's PyTorch frontend
  (for the 3-task model: :class:`~mtmnv3.runtime.openvino_runtime.OpenVINOSession`),
* ``ov_onnx``: OpenVINO fp32 reading the ONNX file directly (``Core.read_model``),
* ``ov_default``: the PyTorch-frontend IR compiled without an inference
  precision hint, i.e. at the CPU plugin's default precision for this CPU
  (bf16 on CPUs with AVX-512 BF16 or AMX; the row names the precision it got).

All callables of one graph and thread count are timed in the same
interleaved rounds (:func:`~mtmnv3.core.profiling.interleaved_timings`,
blocks of ``--inner`` back-to-back calls, order rotating per round); the
table gives median ms and the ratio to ``ort`` from the same rounds.
``--profile`` adds the per-layer counters of the 3-task model (OpenVINO's
``PERF_COUNT``, ONNX Runtime's profiler), summed per layer type.

    python benchmarks/openvino_vs_ort.py --threads 1 2 --profile \\
        --checkpoint weights/mtmnv3_small_3task_synth.pth
"""

from __future__ import annotations

import argparse
import collections
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
CONFIG = "configs/mtmnv3_small_3task_synth.py"
GRAPHS = ("tv_small", "trunk", "model")
OPSET = 17


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default=CONFIG, help=f"the 3-task model's config (default {CONFIG})")
    p.add_argument("--checkpoint", help="its weights (default: random; speed does not depend on them)")
    p.add_argument("--graphs", nargs="+", default=list(GRAPHS), choices=GRAPHS)
    p.add_argument("--size", type=int, help="input height = width (default: the config's input size)")
    p.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    p.add_argument("--rounds", type=int, default=30, help="interleaved rounds (default 30)")
    p.add_argument("--inner", type=int, default=20, help="back-to-back calls per block (default 20)")
    p.add_argument("--profile", action="store_true", help="per-layer-type profile of the 3-task model")
    p.add_argument("--profile-runs", type=int, default=50, help="profiled runs per session (default 50)")
    return p.parse_args(argv)


class _LastStage(nn.Module):
    """The trunk's deepest feature map only (what a torchvision ``features`` gives)."""

    def __init__(self, trunk: nn.Module) -> None:
        super().__init__()
        self.trunk = trunk

    def forward(self, x):
        return self.trunk(x)[-1]


def _quiet():
    warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=UserWarning)


def export_graphs(args, size: int, folder: Path) -> dict[str, dict[str, Path]]:
    """Per graph: its ``.onnx`` and its PyTorch-frontend IR ``.xml``."""
    import openvino as ov
    import torchvision

    from mtmnv3.apis import init_model
    from mtmnv3.runtime.onnx_export import export_module, export_onnx
    from mtmnv3.runtime.openvino_runtime import export_openvino

    x = torch.zeros(1, 3, size, size)
    files = {}
    model = init_model(ROOT / args.config, args.checkpoint).eval()
    for name in args.graphs:
        onnx, xml = folder / f"{name}.onnx", folder / f"{name}.xml"
        if name == "model":
            export_onnx(model, onnx, input_size=size, exporter="torchscript", opset=OPSET)
            export_openvino(model, xml, input_size=size)
        else:
            module = (
                torchvision.models.mobilenet_v3_small() if name == "tv_small" else _LastStage(model.trunk)
            )
            module.eval()
            export_module(module, (x,), onnx, ["images"], exporter="torchscript", opset=OPSET)
            with torch.no_grad():
                ov_model = ov.convert_model(
                    module, example_input=(x,), input=[(ov.PartialShape([1, 3, size, size]), ov.Type.f32)]
                )
            ov.save_model(ov_model, str(xml), compress_to_fp16=False)
        files[name] = dict(onnx=onnx, xml=xml)
    return files


def _compile(core, path: Path, threads: int, precision: str | None, perf_count: bool = False):
    from mtmnv3.runtime import openvino_runtime as ovr

    # The compile properties of OpenVINOSession, less the precision hint where ``precision`` is None.
    config = {
        "INFERENCE_NUM_THREADS": threads,
        "PERFORMANCE_HINT": ovr.PERFORMANCE_HINT,
        "NUM_STREAMS": ovr.NUM_STREAMS,
        "ENABLE_CPU_PINNING": ovr.CPU_PINNING,
    }
    if precision is not None:
        config["INFERENCE_PRECISION_HINT"] = precision
    if perf_count:
        config["PERF_COUNT"] = True
    return core.compile_model(core.read_model(str(path)), "CPU", config)


def _precision(compiled) -> str:
    return compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()


def callables(name: str, files: dict[str, Path], threads: int, x: np.ndarray) -> tuple[dict, dict]:
    """The runs to time, and the inference precision each OpenVINO one got."""
    import openvino as ov

    from mtmnv3.runtime.openvino_runtime import OpenVINOSession
    from mtmnv3.runtime.ort_runtime import make_session

    core = ov.Core()
    ort = make_session(files["onnx"], threads)
    fns = {"ort": lambda: ort.run(None, {"images": x})}
    precisions = {"ort": "f32"}
    if name == "model":
        session = OpenVINOSession(files["xml"], threads=threads)
        fns["ov_pt"] = lambda: session.run(x)
        precisions["ov_pt"] = _precision(session.compiled)
    else:
        c = _compile(core, files["xml"], threads, "f32")
        r = c.create_infer_request()
        fns["ov_pt"] = lambda: r.infer({0: x}, share_inputs=True)
        precisions["ov_pt"] = _precision(c)
    for key, path, precision in (("ov_onnx", files["onnx"], "f32"), ("ov_default", files["xml"], None)):
        c = _compile(core, path, threads, precision)
        r = c.create_infer_request()
        fns[key] = lambda r=r: r.infer({0: x}, share_inputs=True)
        precisions[key] = _precision(c)
    return fns, precisions


def ov_profile(path: Path, threads: int, precision: str | None, x: np.ndarray, runs: int):
    """Per (layer type, kernel): the median time per run in ms; and the median wall ms."""
    import time

    import openvino as ov

    request = _compile(ov.Core(), path, threads, precision, perf_count=True).create_infer_request()
    for _ in range(10):
        request.infer({0: x})
    per_node, walls = collections.defaultdict(list), []
    for _ in range(runs):
        t0 = time.perf_counter()
        request.infer({0: x})
        walls.append((time.perf_counter() - t0) * 1e3)
        for p in request.get_profiling_info():
            per_node[(p.node_name, p.node_type, p.exec_type)].append(p.real_time.total_seconds() * 1e3)
    by_type: collections.Counter = collections.Counter()
    count: collections.Counter = collections.Counter()
    for (_, node_type, exec_type), ms in per_node.items():
        key = f"{node_type} ({exec_type})"
        by_type[key] += float(np.median(ms))
        count[key] += 1
    return by_type, count, float(np.median(walls))


def profile_tables(files: dict[str, Path], threads: int, x: np.ndarray, runs: int) -> str:
    from mtmnv3.core.profiling import format_table
    from mtmnv3.studies.latency.ort_profile import profile_ops

    out = []
    for label, precision in (("OpenVINO f32", "f32"), ("OpenVINO default precision", None)):
        by_type, count, wall = ov_profile(files["xml"], threads, precision, x, runs)
        total = sum(by_type.values())
        rows = [
            [k, count[k], f"{v:.3f}", f"{100 * v / total:.0f}%"]
            for k, v in by_type.most_common()
            if v >= 0.001
        ]
        out.append(
            f"{label}, {threads} thread(s): wall {wall:.3f} ms, layers {total:.3f} ms\n"
            + format_table(["layer type (kernel)", "layers", "ms", "share"], rows)
        )
    p = profile_ops(files["onnx"], x, threads=threads, runs=runs, warmup=10)
    rows = [
        [o.op_type, o.nodes, f"{o.ms:.3f}", f"{100 * o.ms / p.kernel_ms:.0f}%"]
        for o in p.ops
        if o.ms >= 0.001
    ]
    out.append(
        f"ONNX Runtime fp32, {threads} thread(s): run {p.run_ms:.3f} ms, kernels {p.kernel_ms:.3f} ms "
        "(profiler on)\n" + format_table(["operator", "nodes", "ms", "share"], rows)
    )
    return "\n\n".join(out)


def main(argv=None) -> int:
    args = parse_args(argv)
    _quiet()
    from mtmnv3.core.profiling import format_table, interleaved_timings
    from mtmnv3.engine import input_size, load_config

    size = args.size or input_size(load_config(ROOT / args.config).test_dataloader.dataset)
    torch.set_num_threads(max(args.threads))
    x = np.random.default_rng(0).standard_normal((1, 3, size, size)).astype(np.float32)
    rows, profiles = [], []
    with tempfile.TemporaryDirectory(prefix="ov-vs-ort-") as tmp:
        files = export_graphs(args, size, Path(tmp))
        for threads in args.threads:
            for name, paths in files.items():
                fns, precisions = callables(name, paths, threads, x)
                timings = interleaved_timings(fns, rounds=args.rounds, inner=args.inner, warmup=5)
                ref = timings["ort"].median_ms
                for key, t in timings.items():
                    rows.append(
                        [
                            name,
                            size,
                            threads,
                            key,
                            precisions[key],
                            f"{t.median_ms:.3f}",
                            f"{ref / t.median_ms:.2f}",
                        ]
                    )
                del fns
            if args.profile and "model" in files:
                profiles.append(profile_tables(files["model"], threads, x, args.profile_runs))
    headers = ["graph", "px", "threads", "run", "precision", "median ms", "speed-up vs ort"]
    print(format_table(headers, rows))
    for p in profiles:
        print("\n" + p)
    return 0


if __name__ == "__main__":
    sys.exit(main())
