"""Shared fixtures: seeded generators, test data paths, dtypes with their tolerances, the device.

``tests/`` mirrors the package's rooms (tests/analysis, tests/commands, tests/energies, tests/flows,
tests/io, tests/mcmc, tests/molecules, tests/nets, tests/reporting, tests/runtime, tests/stages,
tests/systems, tests/training); the helpers in this folder (``_run_helpers``, the
``load_minimum`` below) are importable from every subfolder.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

DATA = Path(__file__).resolve().parent / "data"
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))  # `from _run_helpers import ...` in subfolders

#: Tolerances per dtype for comparisons of computed values (e3nn's convention: one table, used by
#: every test that runs in both precisions through the ``dtype`` fixture).
TOLERANCES = {torch.float32: {"atol": 1e-4, "rtol": 1e-4}, torch.float64: {"atol": 1e-10, "rtol": 1e-8}}


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


@pytest.fixture(params=[torch.float32, torch.float64], ids=["float32", "float64"])
def dtype(request) -> torch.dtype:
    """Runs the test once per floating-point precision."""
    return request.param


@pytest.fixture
def tol(dtype: torch.dtype) -> dict[str, float]:
    """``atol``/``rtol`` for :func:`torch.testing.assert_close` at the test's ``dtype``."""
    return TOLERANCES[dtype]


@pytest.fixture
def device() -> torch.device:
    """The device under test: CPU, or the one named by ``MOLSAMPLE_TEST_DEVICE`` (e.g. cuda)."""
    return torch.device(os.environ.get("MOLSAMPLE_TEST_DEVICE", "cpu"))


@pytest.fixture
def data_dir() -> Path:
    return DATA


@pytest.fixture
def project_root() -> Path:
    return ROOT


def load_minimum(n: int) -> torch.Tensor:
    """The committed LJ-n global minimum, (1, n, 3) float64."""
    return torch.tensor(np.loadtxt(DATA / f"lj{n}_minimum.txt"), dtype=torch.float64)[None]
