"""Shared test fixtures. The backend is chosen per process through KERAS_BACKEND."""

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "jax")

import keras  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("KERAS_ICT_SHARED", REPO.parent / "shared"))


def pytest_report_header(config):
    return f"keras {keras.__version__}, backend {keras.backend.backend()}, shared data {SHARED}"


@pytest.fixture(scope="session")
def shared_dir():
    if not SHARED.is_dir():
        pytest.skip(f"shared data folder not found at {SHARED}")
    return SHARED


@pytest.fixture(autouse=True)
def _fixed_seed():
    keras.utils.set_random_seed(1234)
    np.random.seed(1234)
    yield
