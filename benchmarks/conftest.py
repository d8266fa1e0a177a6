import pytest
import torch


def pytest_configure(config):
    torch.set_num_threads(2)


@pytest.fixture(scope="session")
def registry():
    from mtbench.plugins import get_registry
    return get_registry(load_entrypoints=False)
