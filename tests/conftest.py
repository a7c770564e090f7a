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


# Set by scripts/test.sh: the backends this suite run covers, in order (one pytest process each).
SUITE_BACKENDS = os.environ.get("KERAS_ICT_SUITE_BACKENDS", "").split()


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "backend_independent: needs no Keras backend; in a multi-backend suite run it runs in one pass only "
        "(torch's, else the first)"
    )
    config.addinivalue_line("markers", "per_backend: runs on every backend inside a module marked backend_independent")
    config.addinivalue_line(
        "markers", "once(backend): a slow end-to-end check; in a multi-backend suite run it runs on that backend only "
        "(on the first pass when that backend is not in the run)"
    )


# Backend-independent tests run in the torch pass when there is one: torch starts and runs the tiny networks of
# these tests (in-process and in the `keras-ict` subprocesses they start) several times faster than TensorFlow
# (tracing) or JAX (one XLA compilation per new op shape), measured in BUILD_NOTES.md ("Test suite").
INDEPENDENT_PASS_BACKEND = "torch"


def independent_pass():
    return INDEPENDENT_PASS_BACKEND if INDEPENDENT_PASS_BACKEND in SUITE_BACKENDS else SUITE_BACKENDS[0]


def _runs_in_this_pass(item, backend):
    first = SUITE_BACKENDS[0]
    independent = item.get_closest_marker("backend_independent") and not item.get_closest_marker("per_backend")
    if independent and backend != independent_pass():
        return False
    once = item.get_closest_marker("once")
    if once is not None:
        chosen = once.args[0]
        return backend == (chosen if chosen in SUITE_BACKENDS else first)
    return True


def pytest_collection_modifyitems(config, items):
    # The slow end-to-end checks first, so that with several xdist workers none of them starts last.
    items.sort(key=lambda item: item.get_closest_marker("once") is None and item.get_closest_marker("slow") is None)
    # A plain `pytest` (no KERAS_ICT_SUITE_BACKENDS) runs everything on the current backend.
    if not SUITE_BACKENDS:
        return
    backend = keras.backend.backend()
    keep = [item for item in items if _runs_in_this_pass(item, backend)]
    dropped = [item for item in items if item not in keep]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep


@pytest.fixture(scope="session")
def shared_dir():
    if not SHARED.is_dir():
        message = f"shared data folder not found at {SHARED} (set KERAS_ICT_SHARED)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message + "; in CI (CI=true) a missing fixture is an error, not a skip", pytrace=False)
        pytest.skip(message)
    return SHARED


@pytest.fixture(autouse=True)
def _fixed_seed():
    keras.utils.set_random_seed(1234)
    np.random.seed(1234)
    yield
