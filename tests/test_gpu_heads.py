"""Head training on a CUDA GPU (skipped where torch sees none): the same synthetic task as on the CPU, and
the trained weights serve queries through the NumPy projection exactly as torch computes them."""

from __future__ import annotations

import numpy as np
import pytest

from unibind.indexer.training.infonce import HeadTrainConfig, train_head
from unibind.indexer.runtime.vectors import normalize

pytestmark = pytest.mark.gpu


def synthetic(n: int = 1500, texts: int = 300, d: int = 64, d_in: int = 96, seed: int = 0):  # type: ignore[no-untyped-def]
    """Features = a fixed random linear map of each sample's description vector, plus noise."""
    rng = np.random.default_rng(seed)
    z = normalize(rng.normal(size=(texts, d)))  # [T, d]
    a = rng.normal(size=(d, d_in)).astype(np.float32)  # [d, d_in]
    own = rng.integers(0, texts, size=n)  # [N]
    x = (z[own] @ a + 0.05 * rng.normal(size=(n, d_in))).astype(np.float32)  # [N, d_in]
    return x, z, [[int(t)] for t in own]


def test_cuda_training_reaches_the_bar_and_projects_like_torch() -> None:
    import torch

    from unibind.indexer.runtime.device import select_device

    device = select_device("auto")
    if not device.is_cuda:
        pytest.skip("no CUDA GPU")
    x, z, ids = synthetic()
    result = train_head(x, z, ids, HeadTrainConfig(max_epochs=60, patience=10), device)
    assert result.metrics["val_r1"] >= 0.9 > result.metrics["untrained_val_r1"] * 3
    linear = result.head.to_torch(device)
    with torch.no_grad():
        ref = torch.nn.functional.normalize(linear(torch.from_numpy(x[:64]).to(device.torch)), dim=-1).cpu().numpy()
    np.testing.assert_allclose(result.head.project(x[:64]), ref, atol=1e-5)
