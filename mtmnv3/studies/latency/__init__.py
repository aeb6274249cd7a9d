"""Per-block latency tables on a named device profile, with SE / hard-swish breakdowns.

Modules: :mod:`~mtmnv3.studies.latency.table` (the table's records and JSON),
:mod:`~mtmnv3.studies.latency.measure` (how it is measured),
:mod:`~mtmnv3.studies.latency.backends` (the eager / compile / ONNX Runtime
runners), :mod:`~mtmnv3.studies.latency.runtime_backends` (the OpenVINO and
ExecuTorch runners), :mod:`~mtmnv3.studies.latency.study_copies` (SE-off and ReLU
copies of a block) and :mod:`~mtmnv3.studies.latency.ort_profile` (ONNX
Runtime's per-operator profile).
"""

from mtmnv3.studies.latency.measure import (
    DEFAULT_CALIBRATION_SAMPLES,
    HeadSpec,
    host_info,
    measure_latency_table,
)
from mtmnv3.studies.latency.ort_profile import (
    OpProfile,
    OpTime,
    median_profile,
    op_profile_table,
    profile_ops,
)
from mtmnv3.studies.latency.study_copies import with_relu, without_se
from mtmnv3.studies.latency.table import (
    BACKENDS,
    CLOCKS,
    DEFAULT_PREDICTION,
    DTYPES,
    INT8_BACKENDS,
    PREDICTIONS,
    TABLE_FORMAT,
    TABLE_VERSION,
    BackendUnavailableError,
    BlockLatency,
    DeviceProfile,
    HeadLatency,
    LatencyTable,
)

__all__ = [
    "BACKENDS",
    "CLOCKS",
    "DEFAULT_CALIBRATION_SAMPLES",
    "DEFAULT_PREDICTION",
    "DTYPES",
    "INT8_BACKENDS",
    "PREDICTIONS",
    "TABLE_FORMAT",
    "TABLE_VERSION",
    "BackendUnavailableError",
    "BlockLatency",
    "DeviceProfile",
    "HeadLatency",
    "HeadSpec",
    "LatencyTable",
    "OpProfile",
    "OpTime",
    "host_info",
    "measure_latency_table",
    "median_profile",
    "op_profile_table",
    "profile_ops",
    "with_relu",
    "without_se",
]
