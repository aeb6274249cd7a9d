import os

import pytest
import torch

# Under pytest-xdist each worker gets its share of the cores: oversubscribed
# intra-op threads spin in OpenMP barriers and slow every worker down.
if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    _threads = max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))
    torch.set_num_threads(_threads)
    os.environ["OMP_NUM_THREADS"] = str(_threads)


@pytest.fixture(autouse=True)
def _seed_and_threads():
    """Each test starts from the same RNG state and the package's registry scope
    (MMDetection tests make ``mmdet`` the default scope); no state leaks between tests."""
    from mmengine.registry import DefaultScope

    torch.manual_seed(0)
    with DefaultScope.overwrite_default_scope("mtmnv3"):
        yield
