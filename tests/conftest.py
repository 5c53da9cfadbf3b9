"""Suite-wide: tests marked ``gpu`` skip cleanly where CUDA is absent; one intra-op thread."""

from __future__ import annotations

import pytest
import torch

# The suite's models are tiny: on a 2-core machine a second intra-op thread costs more in
# synchronisation than it gains (measured: 3 epochs of the digits MLP 3.0 s with 2 threads,
# 0.2 s with 1). Tests that want more threads set them and restore.
torch.set_num_threads(1)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU; this machine has none")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
