import pytest
import torch


@pytest.fixture(autouse=True)
def _seed_and_threads():
    """Each test starts from the same RNG state and the package's registry scope
    (MMDetection tests make ``mmdet`` the default scope); no state leaks between tests."""
    from mmengine.registry import DefaultScope

    torch.manual_seed(0)
    with DefaultScope.overwrite_default_scope("mtmnv3"):
        yield
