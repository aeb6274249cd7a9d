import pytest
import torch


@pytest.fixture(autouse=True)
def _seed_and_threads():
    """Each test starts from the same RNG state; no state leaks between tests."""
    torch.manual_seed(0)
    yield
