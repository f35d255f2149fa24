"""Shared fixtures: seeded generators, test data paths, tiny systems."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

DATA = Path(__file__).resolve().parent / "data"
ROOT = Path(__file__).resolve().parent.parent


# One thread: the tests use small batches, where more threads only add contention on CI's 2 cores.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    np.random.seed(0)
    yield


@pytest.fixture
def generator() -> torch.Generator:
    return torch.Generator().manual_seed(1234)


@pytest.fixture
def data_dir() -> Path:
    return DATA


@pytest.fixture
def project_root() -> Path:
    return ROOT


def load_minimum(n: int) -> torch.Tensor:
    """The committed LJ-n global minimum, (1, n, 3) float64."""
    return torch.tensor(np.loadtxt(DATA / f"lj{n}_minimum.txt"), dtype=torch.float64)[None]
