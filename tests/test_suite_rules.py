"""The suite's own rules (tests/conftest.py): which pass runs a test, and missing fixtures in CI."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import conftest

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.backend_independent


class _Item:
    def __init__(self, *marks):
        self.marks = {m.name: m for m in marks}

    def get_closest_marker(self, name):
        return self.marks.get(name)


def test_each_test_runs_in_the_passes_its_marks_say(monkeypatch):
    monkeypatch.setattr(conftest, "SUITE_BACKENDS", ["tensorflow", "jax", "torch"])
    plain = _Item()
    independent = _Item(pytest.mark.backend_independent.mark)
    per_backend = _Item(pytest.mark.backend_independent.mark, pytest.mark.per_backend.mark)
    once_torch = _Item(pytest.mark.once("torch").mark)
    passes = {
        name: [b for b in ("tensorflow", "jax", "torch") if conftest._runs_in_this_pass(item, b)]
        for name, item in (("plain", plain), ("independent", independent), ("per_backend", per_backend), ("once", once_torch))
    }
    assert passes == {"plain": ["tensorflow", "jax", "torch"], "independent": ["torch"],
                      "per_backend": ["tensorflow", "jax", "torch"], "once": ["torch"]}
    # Without a torch pass, backend-independent tests and a once-test whose backend is not in the run go to the
    # first pass, so that none drops out.
    monkeypatch.setattr(conftest, "SUITE_BACKENDS", ["jax", "tensorflow"])
    assert [b for b in ("jax", "tensorflow") if conftest._runs_in_this_pass(once_torch, b)] == ["jax"]
    assert [b for b in ("jax", "tensorflow") if conftest._runs_in_this_pass(independent, b)] == ["jax"]


@pytest.mark.parametrize("ci,outcome", [("true", "1 error"), ("", "1 skipped")])
def test_a_missing_shared_folder_fails_in_ci_and_skips_elsewhere(ci, outcome):
    env = dict(os.environ, KERAS_ICT_SHARED="/nonexistent/shared", CI=ci, KERAS_ICT_SUITE_BACKENDS="")
    test = "tests/test_cli.py::test_user_errors_are_one_line_and_write_nothing"
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist", test, "-k", "args0"],
                          capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    assert outcome in proc.stdout, proc.stdout[-2000:]
    if ci:
        assert proc.returncode == 1 and "a missing fixture is an error" in proc.stdout


# Module fixtures cheap enough to build once per worker (files written with NumPy, scripts imported by path).
CHEAP_MODULE_FIXTURES = {"files", "tables", "tb", "torch_mod", "pt_path"}

_FIXTURE_SHARING_PLUGIN = """
import json, os
from pathlib import Path

CHEAP = set(json.loads(os.environ["FIXTURE_SHARING_CHEAP"]))


def pytest_collection_finish(session):
    unmarked = []
    for item in session.items:
        info = getattr(item, "_fixtureinfo", None)
        for name, defs in (info.name2fixturedefs.items() if info else ()):
            in_test_module = [d for d in defs if d.scope == "module" and Path(d.baseid or ".").name.startswith("test_")]
            if in_test_module and name not in CHEAP and item.get_closest_marker("xdist_group") is None:
                unmarked.append(item.nodeid + " (" + name + ")")
    Path(os.environ["FIXTURE_SHARING_OUT"]).write_text(json.dumps(unmarked))
"""


def test_tests_sharing_an_expensive_module_fixture_share_a_worker(tmp_path):
    """A module-scoped fixture is built once per xdist worker: every test that requests one defined in a test
    module (an export, the Inception network, the judge) carries an `xdist_group` mark, so the fixture is built
    once per pass, not once per worker. Checked on the whole suite's collection, in a subprocess."""
    (tmp_path / "fixture_sharing_plugin.py").write_text(_FIXTURE_SHARING_PLUGIN)
    out = tmp_path / "unmarked.json"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]),
               FIXTURE_SHARING_OUT=str(out), FIXTURE_SHARING_CHEAP=json.dumps(sorted(CHEAP_MODULE_FIXTURES)),
               KERAS_ICT_SUITE_BACKENDS="")
    proc = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                           "-p", "no:xdist", "-p", "fixture_sharing_plugin", "tests"],
                          capture_output=True, text=True, env=env, cwd=REPO, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    unmarked = json.loads(out.read_text())
    assert not unmarked, unmarked


_GROUPED_TESTS = """
import os
from pathlib import Path

import pytest

OUT = Path(os.environ["GROUP_CHECK_OUT"])


@pytest.mark.parametrize("i", range(6))
@pytest.mark.xdist_group("together")
def test_grouped(i):
    (OUT / f"grouped{i}").write_text(os.environ.get("PYTEST_XDIST_WORKER", "none"))


@pytest.mark.parametrize("i", range(6))
def test_free(i):
    pass
"""


def test_xdist_groups_put_their_tests_on_one_worker(tmp_path):
    """`--dist loadgroup` as scripts/test.sh runs it really keeps an xdist_group on one worker (it silently did not
    with pytest 9 and pytest-xdist 3.8: every expensive module fixture was then built on both workers)."""
    (tmp_path / "test_grouped.py").write_text(_GROUPED_TESTS)
    out = tmp_path / "out"
    out.mkdir()
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "2", "--dist", "loadgroup",
                           "--rootdir", str(tmp_path), str(tmp_path / "test_grouped.py")],
                          capture_output=True, text=True, env=dict(os.environ, GROUP_CHECK_OUT=str(out)), cwd=tmp_path,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    workers = {p.read_text() for p in out.iterdir()}
    assert len(list(out.iterdir())) == 6 and len(workers) == 1 and workers != {"none"}, workers


def test_stderr_filter_drops_only_the_frameworks_start_up_logging():
    from harness import our_stderr_lines

    tf_startup = ("WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
                  "I0000 00:00:1796185460.570331    1983 port.cc:153] oneDNN custom operations are on.\n"
                  "W0000 00:00:1796185460.6    12 cpu_feature_guard.cc:227] This TensorFlow binary is optimized\n"
                  "To enable the following instructions: AVX2 FMA, in other operations, rebuild TensorFlow\n")
    ours = "keras-ict: error: batch size 7 is not divisible by the 2 workers of TF_CONFIG"
    assert our_stderr_lines(tf_startup + ours + "\n") == [ours]
    traceback = 'Traceback (most recent call last):\n  File "x.py", line 1\nValueError: I0000 is not a log line'
    assert our_stderr_lines(tf_startup + traceback) == traceback.splitlines()
