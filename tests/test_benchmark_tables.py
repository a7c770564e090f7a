"""benchmarks/tables.py: the derived columns (vs plain torch, TFLOP/s, MFU, paper-run hours) are computed right."""

from pathlib import Path

import pytest

from harness import load_script

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.backend_independent  # arithmetic on JSON, no Keras


@pytest.fixture(scope="module")
def tables():
    return load_script("benchmarks/tables.py")


def _row(variant, img_per_s, preset="ncsnpp_cifar10", batch=512):
    step = batch / img_per_s
    return {"preset": preset, "variant": variant, "batch_size": batch, "step_s_min": step, "step_s_median": step,
            "img_per_s_median": img_per_s, "peak_rss_mib": 1000.0, "first_step_s": 3.0}


def test_train_table_derived_columns(tables):
    rows = [_row("torch-plain (eager)", 2000.0), _row("jax (jax.jit)", 4000.0)]
    table = tables.train_table(rows, flops={"ncsnpp_cifar10": 171e9}, peak_tflops=1000.0)
    jax_line = next(line for line in table.splitlines() if "jax" in line)
    cells = [c.strip() for c in jax_line.strip("|").split("|")]
    # vs plain torch 2x; 171 GFLOP x 4000 img/s = 684 TFLOP/s = 68.4% of 1000; 400k x 1024 images / 4000 / 3600 h.
    assert cells[6:] == ["2.00x", "1000", "3.0", "684.000", "68.4%", "28"]
    without = tables.train_table(rows)
    assert "MFU" not in without and without.splitlines()[-1].count("|") == without.splitlines()[0].count("|")


def test_train_table_keeps_devices_and_precisions_apart(tables):
    """GPU rows are compared with the plain loop on the same GPU, bf16 rows are labelled, failures show their error."""
    cpu = [_row("torch-plain (eager)", 10.0), _row("torch (eager)", 5.0)]
    gpu = [dict(_row("torch-plain (eager)", 1000.0), device_name="H100"),
           dict(_row("torch (eager)", 1500.0), device_name="H100"),
           dict(_row("torch (eager)", 3000.0), device_name="H100", dtype_policy="mixed_bfloat16"),
           dict(preset="ncsnpp_cifar10", batch_size=512, variant="jax (jax.jit)", device_name="H100", failed=True,
                error="RESOURCE_EXHAUSTED: out of memory")]
    lines = tables.train_table(cpu + gpu).splitlines()
    ratio = {line.split("|")[2].strip(): line.split("|")[7].strip() for line in lines[2:]}
    assert ratio["torch (eager)"] == "0.50x"
    assert ratio["torch (eager) @ H100"] == "1.50x"
    assert ratio["torch (eager) mixed_bfloat16 @ H100"] == "3.00x"
    assert any("jax (jax.jit) @ H100" in line and "fails: RESOURCE_EXHAUSTED" in line for line in lines)
    assert len({line.count("|") for line in lines}) == 1


def test_published_ablation_tables_match_the_json(tables):
    """The ablation figures in README.md and benchmarks/README.md are the ones in benchmarks/results/ablation.json."""
    import json

    report = json.loads((REPO / "benchmarks" / "results" / "ablation.json").read_text())
    table = tables.ablation_table(report)
    assert table.split("\n\ncompute")[0] in (REPO / "benchmarks" / "README.md").read_text()
    readme = (REPO / "README.md").read_text()
    for row in report["results"]:
        assert f"| {row['fid10k_1step']:.1f} | {row['fid10k_2step']:.1f} |" in readme, row["variant"]


def _strings(data):
    if isinstance(data, dict):
        for value in data.values():
            yield from _strings(value)
    elif isinstance(data, list):
        for value in data:
            yield from _strings(value)
    elif isinstance(data, str):
        yield data


def test_committed_results_carry_no_absolute_paths():
    import json

    files = sorted((REPO / "benchmarks" / "results").glob("*.json")) + sorted((REPO / "zoo").glob("*/*.json"))
    assert files
    found = {f"{p.relative_to(REPO)}: {s}" for p in files for s in _strings(json.loads(p.read_text()))
             if s.startswith(("/work", "/root", "/home", "/tmp", "/Users"))}
    assert not found, sorted(found)[:10]


def test_portable_paths_map_repo_sibling_and_home_paths():
    portable_paths = load_script("benchmarks/_common.py").portable_paths

    home = Path.home()
    data = {"a": str(REPO / "fid_refs" / "x.npz"), "b": [str(REPO.parent / "shared" / "d.npz")],
            "c": str(home / ".cache" / "r"), "d": "80 0.821", "e": 3}
    assert portable_paths(data) == {"a": "fid_refs/x.npz", "b": ["../shared/d.npz"], "c": "~/.cache/r", "d": "80 0.821",
                                    "e": 3}
