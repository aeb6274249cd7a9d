"""Hardware-aware study: latency tables, stage-split search, quantization.

* :mod:`.latency_table`: per-block latency on a device profile (backend,
  threads, resolution, dtype), with an SE / hard-swish breakdown.
* :mod:`.split_search`: balanced pipeline stages, device/server split,
  per-frame budget fitting, all from a table.
* :mod:`.pipeline`: run a stage plan in threads and measure it.
* :mod:`.quantize` and :mod:`.sqnr` (imported on demand; they load ONNX
  Runtime's quantization tools and torchao): int8 recipes, PTQ, PT2E, QAT,
  per-layer quantization error.
"""

from .latency_table import (
    BACKENDS,
    DTYPES,
    BackendUnavailableError,
    BlockLatency,
    DeviceProfile,
    HeadLatency,
    LatencyTable,
    measure_latency_table,
)
from .pipeline import PipelineResult, run_pipeline
from .split_search import (
    BudgetFit,
    DeviceServerSplit,
    SplitPoint,
    balanced_partition,
    balanced_stages,
    best_device_server_split,
    fit_budget,
)

__all__ = [
    "BACKENDS",
    "DTYPES",
    "BackendUnavailableError",
    "BlockLatency",
    "DeviceProfile",
    "HeadLatency",
    "LatencyTable",
    "measure_latency_table",
    "PipelineResult",
    "run_pipeline",
    "BudgetFit",
    "DeviceServerSplit",
    "SplitPoint",
    "balanced_partition",
    "balanced_stages",
    "best_device_server_split",
    "fit_budget",
]
