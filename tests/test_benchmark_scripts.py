"""The benchmark scripts run end to end on a tiny configuration (no timings are checked: figures are produced
by the scripts, never asserted) and refuse bad input before any work."""

import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import pytest

from harness import load_script

REPO = Path(__file__).resolve().parents[1]


def _run(*args):
    env = dict(os.environ, KERAS_BACKEND=keras.backend.backend(), TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, cwd=REPO, timeout=600)


@pytest.mark.once("torch")
def test_train_throughput_measures_one_row(tmp_path):
    out = tmp_path / "train.json"
    proc = _run("benchmarks/train_throughput.py", "--backends", keras.backend.backend(), "--jit", "false",
                "--preset", "ncsnpp_mnist_small", "--batch-size", "2", "--steps-per-repeat", "1", "--repeats", "2",
                "--warmup", "0", "--json", str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["failures"] == []
    (row,) = report["results"]
    assert row["backend"] == keras.backend.backend() and row["batch_size"] == 2
    assert row["dtype_policy"] == "float32" and row["params"] > 1_000_000
    assert len(row["repeat_step_s"]) == 2 and row["img_per_s_median"] == 2 / row["step_s_median"]
    assert row["device_name"] is None and row["peak_device_mib"] is None  # CPU
    assert not list(tmp_path.glob("*.tmp"))


@pytest.mark.backend_independent
def test_train_throughput_rejects_bad_batch_sizes(tmp_path):
    out = tmp_path / "train.json"
    for bad in ("0,32", "12a"):
        proc = _run("benchmarks/train_throughput.py", "--batch-sizes", bad, "--json", str(out))
        assert proc.returncode == 2 and ("--batch-sizes" in proc.stderr or "batch sizes must be" in proc.stderr)
        assert not out.exists()


def _load_recipe_study():
    return load_script("benchmarks/recipe_study.py")


@pytest.mark.backend_independent
def test_recipe_study_variants_fix_the_curriculum_in_images():
    study = _load_recipe_study()
    fields, batch = study.variant_overrides("batch64", 32)
    assert batch == 64 and fields["curriculum_steps"] == study.CURRICULUM_IMAGES // 64
    fields, batch = study.variant_overrides("s1-150-curr32k", 32)
    assert batch == 32 and fields == {"s1": 150, "curriculum_steps": 1000}
    from keras_ict.recipes import resolve_config

    for name in {**study.VARIANTS, **study.COMBINATIONS}:  # every variant is a valid config
        resolve_config("mnist", study.variant_overrides(name, 32)[0])


@pytest.mark.backend_independent
def test_recipe_study_collect_writes_curves_from_run_folders(tmp_path):
    work = tmp_path / "work"
    for name, fids in (("base", (300.0, 200.0)), ("s1-150", (250.0, 120.0))):
        run = work / name
        run.mkdir(parents=True)
        (run / "config.json").write_text(json.dumps({"batch_size": 32, "s1": 150, "seed": 0}))
        (run / "log.csv").write_text("step,images_seen,wall_s,loss,num_scales,mean_sigma\n"
                                     "50,1600,100,1,11,1\n100,3200,140,1,11,1\n150,4800,180,1,11,1\n")
        (run / "fid.csv").write_text("step,metric,fid,num,seeds,sigmas\n"
                                     f"100,fid2k_1step,{fids[0] + 50},2000,0-1999,80\n"
                                     f"100,fid2k_2step,{fids[0]},2000,0-1999,80 0.821\n"
                                     f"150,fid2k_1step,{fids[1] + 50},2000,0-1999,80\n"
                                     f"150,fid2k_2step,{fids[1]},2000,0-1999,80 0.821\n")
    out = tmp_path / "study.json"
    proc = subprocess.run([sys.executable, "benchmarks/recipe_study.py", "--collect", "--work", str(work), "--json", str(out)],
                          capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(out.read_text())
    rows = {r["variant"]: r for r in report["variants"]}
    assert rows["s1-150"]["img_per_s_median"] == 40.0  # 1600 images per 40 s
    assert [p["fid2k_2step"] for p in rows["s1-150"]["points"]] == [250.0, 120.0]
    assert rows["base"]["points"][1]["images"] == 4800 and rows["base"]["images_seen"] == 4800
    assert out.with_suffix(".png").stat().st_size > 10_000
    assert "/tmp" not in report["protocol"]["reference"] and not report["protocol"]["reference"].startswith("/")
    table = proc.stdout.splitlines()
    assert table[2].startswith("| s1-150 |")  # best two-step FID first

    # A variant whose run folder is gone (a new machine) keeps its row from the earlier JSON; present ones are re-read.
    report["variants"].append(dict(rows["base"], variant="lost-variant", source="run folder"))
    out.write_text(json.dumps(report))
    (work / "base" / "fid.csv").unlink()
    proc = subprocess.run([sys.executable, "benchmarks/recipe_study.py", "--collect", "--work", str(work), "--json", str(out)],
                          capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = {r["variant"]: r for r in json.loads(out.read_text())["variants"]}
    assert sorted(rows) == ["base", "lost-variant", "s1-150"]
    assert rows["lost-variant"]["source"].startswith("earlier JSON") and rows["lost-variant"]["points"]
    assert rows["base"]["source"] == "run folder" and rows["base"]["points"] == []


@pytest.mark.backend_independent
def test_zoo_card_learning_curve_reads_the_run_logs(tmp_path):
    publish = load_script("scripts/zoo/publish.py")
    run = tmp_path / "run"
    run.mkdir()
    assert publish.learning_curve(run, 32, tmp_path / "none.png") is False and not (tmp_path / "none.png").exists()
    (run / "fid.csv").write_text("step,metric,fid,num,seeds,sigmas\n1000,fid2k_1step,200,2000,0-1999,80\n"
                                 "2000,fid2k_1step,100,2000,0-1999,80\n")
    (run / "judge.csv").write_text("step,metric,value,num,seeds\n250,judge2k_fd_1step,900,2000,0-1999\n"
                                   "250,judge2k_recognisable_1step,0.1,2000,0-1999\n500,judge2k_fd_1step,500,2000,0-1999\n")
    assert publish.learning_curve(run, 32, tmp_path / "curve.png") is True
    assert (tmp_path / "curve.png").stat().st_size > 5_000


@pytest.mark.backend_independent
def test_zoo_card_says_whether_the_target_is_reached_and_what_reaching_it_would_take():
    publish = load_script("scripts/zoo/publish.py")
    results = [{"metric": "fid10k_1step", "fid": 45.0, "steps": 1}, {"metric": "fid10k_2step", "fid": 5.5, "steps": 2}]
    extrapolation = {"targets": [
        {"metric": "fid2k_1step", "target": 10.0, "images": 4_000_000, "cpu_hours": 45.3, "fit": {"a": 16.1, "b": -0.9}},
        {"metric": "fid2k_2step", "target": 6.0, "note": "reached: fid2k_2step 5.9 <= 6 at 900000 images"}]}
    rows = publish.target_rows("mnist", results, 1_000_000, extrapolation)
    assert [(r["target"], r["reached"]) for r in rows] == [(10.0, False), (6.0, True)]
    assert rows[0]["extrapolation"]["times_run"] == 4.0 and "extrapolation" not in rows[1]
    text = publish.target_section(rows, "benchmarks/results/budget_mnist_long.json")
    assert "| fid10k_1step | 45.00 | <= 10 | **not reached** | fid2k_1step 10 at ~4.0M images (4x this run's" in text
    assert "| fid10k_2step | 5.50 | <= 6 | reached | - |" in text and "budget_mnist_long.json" in text
    # Not falling: the card says so instead of a number; an entry without a target gets no section.
    flat = {"targets": [{"metric": "fid2k_1step", "target": 10.0, "note": "not falling (exponent 0.1 >= 0)"}]}
    rows = publish.target_rows("cifar10-small", [dict(results[0], fid=140.0)], 1_000_000, flat)
    assert (rows[0]["target"], rows[0]["reached"]) == (60.0, False) and "not falling" in publish.target_section(rows)
    assert publish.target_rows("mnist-ect", results, 1_000_000) == [] and publish.target_section([]) == ""


@pytest.mark.backend_independent
def test_zoo_card_of_a_tuned_model_says_how_it_was_made(tmp_path):
    publish = load_script("scripts/zoo/publish.py")
    run = tmp_path / "edm"
    (run / "final").mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"preset": "mnist-edm", "method": "edm", "batch_size": 32}))
    (run / "final" / "metadata.json").write_text(json.dumps(
        {"steps": 1500, "images_seen": 48000, "wall_time_s": 3600.0, "backend": "tensorflow"}))
    (tmp_path / "fid.json").write_text(json.dumps({"results": [
        {"metric": "fid10k_heun18", "fid": 12.345, "sampler": "heun", "heun_steps": 18, "network_calls": 35}]}))
    pre = publish.pretraining_summary(run, tmp_path / "fid.json")
    assert (pre["preset"], pre["steps"], pre["images_seen"]) == ("mnist-edm", 1500, 48000)
    text = publish.made_by({"pretraining": pre, "wall_time_s": 1800.0})
    assert "`mnist-edm`, 1500 steps" in text and "fid10k_heun18 12.35 (Heun 18 steps, 35 network calls)" in text
    assert "1.50 h of training in all" in text
    assert "diffusion pre-training with EDM's loss" in text and "the diffusion model scores" in text
    cond = publish.made_by({"pretraining": dict(pre, method="ict", preset="mnist", fid=[]), "wall_time_s": 1800.0})
    assert cond.startswith("* **Made by:** unconditional iCT training (preset `mnist`") and "label embedding" in cond
    assert publish.made_by({"pretraining": None, "wall_time_s": 1.0}) == ""
    assert publish._sampler_text({"sigmas": [80.0, 0.821]}) == "80, 0.821"
    assert publish.ema_text({"ema_decay": 0.999}) == "decay 0.999"
    posthoc = publish.ema_text({"ema_decay": 0.999, "ema_warmup": True,
                                "posthoc_ema": {"decay": 0.9995, "from_step": 30050, "to_step": 32000}})
    assert posthoc.startswith("decay 0.999, reached through the warm-up") and "post-hoc EMA of decay 0.9995" in posthoc
    assert "from step 30050" in posthoc and "up to step 32000" in posthoc


@pytest.mark.backend_independent
def test_multiprocess_scaling_reads_throughput_after_the_warm_up_and_checks_its_input(tmp_path, capsys):
    scaling = load_script("benchmarks/multiprocess_scaling.py")
    rows = ["step,images_seen,wall_s,loss,num_scales,mean_sigma"]
    rows += [f"{s},{8 * s},{30.0 + 0.5 * (s - 1) if s > 1 else 30.0},1.0,11,1.0" for s in range(1, 11)]
    (tmp_path / "log.csv").write_text("\n".join(rows) + "\n")
    # Steps 3 .. 10: 7 steps of 8 images in 3.5 s (step 1's 30 s of compilation left out).
    img_s, timed = scaling.throughput(tmp_path, 3, 8)
    assert timed == 7 and img_s == pytest.approx(7 * 8 / 3.5)
    with pytest.raises(RuntimeError, match="fewer than 2 steps after the warm-up of 10"):
        scaling.throughput(tmp_path, 10, 8)
    for args, message in ((["--batch-size", "7"], "divisible by 2"), (["--steps", "5", "--warmup", "4"], "must exceed"),
                          (["--data", str(tmp_path / "none.npz")], "does not exist")):
        with pytest.raises(SystemExit):
            scaling.main(args + ["--json", str(tmp_path / "out.json")])
        assert message in capsys.readouterr().err
    assert not (tmp_path / "out.json").exists()


@pytest.mark.backend_independent
def test_zoo_config_names_the_fid_statistics_by_repo_path(tmp_path):
    publish = load_script("scripts/zoo/publish.py")
    copy = tmp_path / "mnist-train-32px.npz"  # the same file in another worktree
    copy.write_bytes((REPO / "fid_refs" / "mnist-train-32px.npz").read_bytes())
    config = {"network": {}, "training": {"fid_ref": str(copy), "seed": 0}}
    assert publish.portable_config(config)["training"] == {"fid_ref": "fid_refs/mnist-train-32px.npz", "seed": 0}
    assert config["training"]["fid_ref"] == str(copy)  # the run's own config is left as it is
    copy.write_bytes(b"other statistics")
    assert publish.portable_config(config)["training"]["fid_ref"] == str(copy)  # not the same file: kept (under /tmp)
    config = {"training": {"data": str(REPO.parent / "shared" / "datasets" / "mnist.npz"),
                           "init": str(Path.home() / ".cache" / "keras_ict" / "runs" / "edm")}}
    assert publish.portable_config(config)["training"] == {"data": "../shared/datasets/mnist.npz",
                                                            "init": "~/.cache/keras_ict/runs/edm"}


@pytest.mark.backend_independent
def test_data_pipeline_benchmark_times_both_pipelines(tmp_path):
    out = tmp_path / "data.json"
    proc = _run("benchmarks/data_pipeline.py", "--batches", "2", "--warmup", "1", "--sources",
                "mnist .npz, pad 28->32, labels", "--train-backends", "--json", str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(out.read_text())
    assert [r["pipeline"] for r in report["pipelines"]] == ["tf", "numpy"]
    assert all(r["images_per_s"] > 0 and r["path"] == "../shared/datasets/mnist.npz" for r in report["pipelines"])
    assert report["train_step"] == []


@pytest.mark.backend_independent
def test_install_check_refuses_unknown_extras(tmp_path):
    proc = _run("scripts/check_install.py", "--extras", "mxnet", "--work", str(tmp_path / "work"))
    assert proc.returncode == 2 and "invalid choice: 'mxnet'" in proc.stderr
    assert not (tmp_path / "work").exists()


@pytest.mark.backend_independent
def test_ect_vs_ict_collect_puts_both_arms_on_one_time_axis(tmp_path):
    work = tmp_path / "work"
    log = "step,images_seen,wall_s,loss,num_scales,mean_sigma\n50,1600,100,1,11,1\n100,3200,200,1,11,1\n"
    judge = ("step,metric,value,num,seeds\n50,judge1k_fd_1step,300,1000,0-999\n50,judge1k_fd_2step,200,1000,0-999\n"
             "100,judge1k_fd_1step,150,1000,0-999\n100,judge1k_fd_2step,90,1000,0-999\n")
    for stage, judged in (("ict/ict", True), ("edm+ect/edm", False), ("edm+ect/ect", True)):
        run = work / stage
        run.mkdir(parents=True)
        (run / "config.json").write_text(json.dumps({"batch_size": 32, "seed": 0}))
        (run / "log.csv").write_text(log)
        if judged:
            (run / "judge.csv").write_text(judge)
    (work / "ict" / "fid10000.json").write_text(json.dumps({"results": [
        {"metric": "fid10k_1step", "fid": 120.123}, {"metric": "fid10k_2step", "fid": 99.0}]}))
    (work / "edm+ect" / "edm" / "fid2k_heun18.json").write_text(json.dumps({"results": [
        {"metric": "fid2k_heun18", "fid": 53.751}]}))
    # The flags the runs were trained with win over --collect's own (defaults here: seed 0, 1 worker).
    (work / "training_flags.json").write_text(json.dumps({"seed": 1, "workers": 2}))
    out = tmp_path / "evi.json"
    proc = _run("benchmarks/ect_vs_ict.py", "--collect", "--work", str(work), "--json", str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    arms = {a["arm"]: a for a in json.loads(out.read_text())["arms"]}
    assert [p["hours"] for p in arms["ict"]["points"]] == [round(100 / 3600, 4), round(200 / 3600, 4)]
    # The tuning stage's points come after the diffusion stage's 200 s.
    assert [p["hours"] for p in arms["edm+ect"]["points"]] == [round(300 / 3600, 4), round(400 / 3600, 4)]
    assert arms["edm+ect"]["wall_s"] == 400 and arms["ict"]["final_fid"] == {"fid10k_1step": 120.12, "fid10k_2step": 99.0}
    assert arms["edm+ect"]["stages"][0]["fid_heun"] == {"fid2k_heun18": 53.75}
    protocol = json.loads(out.read_text())["protocol"]
    assert (protocol["seed"], protocol["workers"]) == (1, 2)
    assert out.with_suffix(".png").stat().st_size > 10_000
    assert "| ict | ict 100 (200) | 0.06 | 150.0 / 90.0 | 120.1 / 99.0 |" in proc.stdout


@pytest.mark.backend_independent
def test_budget_extrapolation_recovers_a_power_law_and_says_when_it_cannot(tmp_path, capsys):
    budget = load_script("benchmarks/budget_extrapolation.py")
    # FID = 1e4 * images^-0.5: 100 at 10k images, 10 at 1M.
    points = [{"images": i, "fid2k_1step": 1e4 * i**-0.5} for i in (10_000, 40_000, 160_000)]
    points[0]["fid2k_2step"] = 50.0  # one point only
    row = budget.extrapolate(points, "fid2k_1step", 10.0, img_per_s=100.0)
    assert row["fit"]["b"] == pytest.approx(-0.5) and row["images"] == pytest.approx(1_000_000, rel=1e-6)
    assert row["times_last"] == 6.2 and row["cpu_hours"] == pytest.approx(1e6 / 100 / 3600, abs=0.05)
    assert "images" not in budget.extrapolate(points, "fid2k_1step", 10.0, from_images=40_001)
    assert "at least 2" in budget.extrapolate(points, "fid2k_2step", 6.0)["note"]
    assert budget.extrapolate(points, "fid2k_1step", 30.0)["note"].startswith("reached")
    rising = [{"images": i, "fid": v} for i, v in ((1, 5.0), (2, 6.0))]
    assert "not falling" in budget.extrapolate(rising, "fid", 1.0)["note"]
    flat = [{"images": i, "fid": v} for i, v in ((32_000, 47.4), (192_000, 44.2))]  # mnist-cond's tuning, session 18
    slow = budget.extrapolate(flat, "fid", 10.0)
    assert "falls too slowly" in slow["note"] and "images" not in slow and slow["fit"]["b"] < 0
    with pytest.raises(ValueError, match="distinct"):
        budget.fit_power_law([5, 5], [1.0, 2.0])
    # End to end on a run folder: fid.csv + log.csv, JSON and PNG.
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"batch_size": 32}))
    (run / "log.csv").write_text("step,images_seen,wall_s,loss,num_scales,mean_sigma\n100,3200,100,1,11,1\n"
                                 "200,6400,200,1,11,1\n")
    (run / "fid.csv").write_text("step,metric,fid,num,seeds,sigmas\n" + "".join(
        f"{s},fid2k_1step,{1e4 * (s * 32) ** -0.5},2000,0-1999,80\n" for s in (1000, 4000)))
    out = tmp_path / "budget.json"
    assert budget.main(["--run", str(run), "--target", "fid2k_1step=10", "--json", str(out)]) == 0
    (target,) = json.loads(out.read_text())["targets"]
    assert target["images"] == pytest.approx(1_000_000, rel=1e-6) and target["cpu_hours"] == pytest.approx(8.7, abs=0.05)
    assert out.with_suffix(".png").stat().st_size > 5_000
    assert "fid2k_1step -> 10: 1,000,000 images" in capsys.readouterr().out
    for bad in (["--target", "fid=0"], ["--target", "fid"]):
        with pytest.raises(SystemExit):
            budget.main(["--run", str(run), *bad, "--json", str(tmp_path / "x.json")])
    with pytest.raises(SystemExit):
        budget.main(["--run", str(tmp_path), "--target", "fid=1", "--json", str(tmp_path / "x.json")])
    assert "not a run folder" in capsys.readouterr().err and not (tmp_path / "x.json").exists()


@pytest.mark.backend_independent
def test_long_run_scripts_refuse_an_unknown_entry_and_an_unfinished_run(tmp_path):
    env = dict(os.environ, KERAS_ICT_CACHE=str(tmp_path))
    for script in ("scripts/zoo/train_long.sh", "scripts/zoo/publish_long.sh", "scripts/zoo/extend_long.sh"):
        proc = subprocess.run(["bash", script, "mnist-large", "1m", "1m"], capture_output=True, text=True, cwd=REPO,
                              env=env)
        assert proc.returncode == 2 and "unknown entry 'mnist-large'" in proc.stderr, (script, proc.stderr)
    run = tmp_path / "runs" / "zoo" / "mnist-long"
    run.mkdir(parents=True)
    (run / "config.json").write_text("{}")  # a run folder that has not finished: no final/
    proc = subprocess.run(["bash", "scripts/zoo/publish_long.sh", "mnist"], capture_output=True, text=True, cwd=REPO,
                          env=env)
    assert proc.returncode == 1 and "has not finished training" in proc.stderr, proc.stderr
    assert sorted(p.name for p in run.iterdir()) == ["config.json"]  # nothing written before the refusal
    proc = subprocess.run(["bash", "scripts/zoo/extend_long.sh", "mnist", "100", "1m"], capture_output=True, text=True,
                          cwd=REPO, env=env)
    assert proc.returncode == 1 and "has not finished" in proc.stderr, proc.stderr
    assert not (run.parent / "mnist-long-ext").exists()
    assert load_script("scripts/zoo/targets.py").extrapolation_flags("cifar10-small") == (
        "--target fid2k_1step=60 --target fid2k_2step=45")


@pytest.mark.backend_independent
def test_preset_two_step_sigma_refuses_bad_input_before_training(tmp_path):
    env = dict(os.environ, KERAS_ICT_CACHE=str(tmp_path))
    script = "benchmarks/preset_two_step_sigma.sh"
    proc = subprocess.run(["bash", script, "mnist-large", "1m"], capture_output=True, text=True, cwd=REPO, env=env)
    assert proc.returncode == 2 and "unknown preset 'mnist-large'" in proc.stderr, proc.stderr
    proc = subprocess.run(["bash", script, "mnist", "1m", "0.2,x"], capture_output=True, text=True, cwd=REPO, env=env)
    assert proc.returncode == 1 and "--sigmas must be comma-separated numbers" in proc.stderr, proc.stderr
    assert list(tmp_path.iterdir()) == []  # no run folder started


def _load_two_step_sigma():
    return load_script("benchmarks/two_step_sigma.py")


@pytest.mark.backend_independent
def test_two_step_sigma_parses_checks_and_keeps_rows_only_for_the_same_model(tmp_path):
    search = _load_two_step_sigma()
    assert search.parse_sigmas("1.5, 0.4,0.821,0.4") == [0.4, 0.821, 1.5]
    for bad in ("", "0.4,x"):
        with pytest.raises(ValueError, match="--sigmas"):
            search.parse_sigmas(bad)
    search.check_sigmas([0.4, 79.0], 0.002, 80.0)
    with pytest.raises(ValueError, match=r"\[80.0\]"):
        search.check_sigmas([0.4, 80.0], 0.002, 80.0)
    path = tmp_path / "search.json"
    key = {"weights_sha256": "a", "ref_sha256": "b", "num": 2000}
    path.write_text(json.dumps({"key": key, "rows": [{"sigma": 0.821, "fid": 20.0}]}))
    assert search.kept_rows(path, key) == [{"sigma": 0.821, "fid": 20.0}]
    assert search.kept_rows(path, dict(key, num=10000)) == []  # another count: scored again
    assert search.kept_rows(tmp_path / "missing.json", key) == []
    assert search.best_row([{"sigma": 0.4, "fid": 30.0}, {"sigma": 1.0, "fid": 12.0}])["sigma"] == 1.0


@pytest.mark.backend_independent
def test_two_step_sigma_refuses_bad_input_before_writing(tmp_path):
    out = tmp_path / "search.json"
    ref = "fid_refs/mnist-train-32px.npz"
    for args, message in ((("--sigmas", "0.4,abc", "--ref", ref), "--sigmas"),
                          (("--sigmas", "0.4", "--ref", ref, "--num", "1"), "--num"),
                          (("--sigmas", "0.4", "--ref", str(tmp_path / "none.npz")), "no such statistics file")):
        proc = _run("benchmarks/two_step_sigma.py", "--model", "mnist", "--json", str(out), *args)
        assert proc.returncode == 2 and message in proc.stderr, proc.stderr[-1000:]
    assert not out.exists()


@pytest.mark.once("tensorflow")
def test_two_step_sigma_scores_each_sigma_once_and_refuses_sigmas_outside_the_range(tmp_path, monkeypatch):
    import keras_ict.evaluation

    search = _load_two_step_sigma()
    scored = []

    def fake_fid(model, ref, *, num, sigmas, progress):  # FID stand-in: the search logic, not Inception, is tested
        scored.append(sigmas[-1])
        return {"fid": 10.0 + (sigmas[-1] - 1.2) ** 2, "backend": keras.backend.backend()}

    import keras_ict.digit_judge

    judged = []

    def fake_judge(model, judge, *, num, sigmas):
        judged.append(sigmas[-1])
        return {"judge_recognisable": 0.9 - sigmas[-1] / 10, "judge_fd": 3.0, "judge_confidence": 0.9}

    monkeypatch.setattr(keras_ict.evaluation, "compute_fid", fake_fid)
    monkeypatch.setattr(keras_ict.digit_judge, "judge_model", fake_judge)
    out = tmp_path / "search.json"
    # The zoo's mnist weights with a known recorded sigma, whatever sigma the entry is published with.
    model = load_script("scripts/zoo/publish.py").with_two_step_sigma(REPO / "zoo" / "mnist", 0.821, tmp_path / "m")
    common = ["--model", str(model), "--ref", "fid_refs/mnist-train-32px.npz", "--num", "100", "--json", str(out)]
    search.main(common + ["--sigmas", "0.821,2", "--no-judge"])
    assert judged == [] and "judge_recognisable" not in json.loads(out.read_text())["rows"][0]
    search.main(common + ["--sigmas", "0.821,1.2"])  # 0.821 keeps its FID and gets its judge scores
    assert scored == [0.821, 2.0, 1.2] and judged == [0.821, 1.2]
    report = json.loads(out.read_text())
    assert [r["sigma"] for r in report["rows"]] == [0.821, 1.2, 2.0]
    assert [r.get("judge_recognisable") for r in report["rows"]] == [0.8179, 0.78, None]
    assert "judge_confidence" not in report["rows"][0]
    assert "| 0.821 (recorded) | 10.14 | 0.818 | 3.000 |" in search.table(report)
    # The same weights published with the searched sigma: nothing is scored again, the recorded sigma stays 0.821.
    republished = load_script("scripts/zoo/publish.py").with_two_step_sigma(model, 1.2, tmp_path / "m2")
    search.main(["--model", str(republished)] + common[2:] + ["--sigmas", "1.2"])
    assert scored == [0.821, 2.0, 1.2] and judged == [0.821, 1.2]
    assert json.loads(out.read_text())["model"]["recorded_two_step_sigma"] == 0.821
    assert report["best"]["sigma"] == 1.2 and report["metric"] == "fid100_2step"
    assert report["model"]["recorded_two_step_sigma"] == 0.821 and out.with_suffix(".png").is_file()
    with pytest.raises(SystemExit):
        search.main(common + ["--sigmas", "0.821,80"])
    assert len(scored) == 3


@pytest.mark.backend_independent
def test_zoo_table_names_the_first_stage_of_a_tuned_entry():
    table = load_script("scripts/zoo/table.py")
    assert table.first_stage({"method": "edm", "preset": "mnist-edm"}) == "diffusion"
    assert table.first_stage({"method": "ict", "preset": "mnist"}) == "unconditional (mnist)"
    text = table.table()  # the committed entries: mnist-cond is tuned from the unconditional mnist run
    assert "+ 30,000 unconditional (mnist)" in text and "+ 1,500 diffusion" in text


@pytest.mark.backend_independent
def test_publish_takes_the_two_step_sigma_of_a_search_made_for_its_weights(tmp_path):
    from keras_ict.files import read_json, sha256_file
    from keras_ict.zoo import verify_files

    publish = load_script("scripts/zoo/publish.py")
    model = REPO / "zoo" / "mnist"
    search = {"model": {"recorded_two_step_sigma": 0.821}, "metric": "fid2k_2step",
              "key": {"weights_sha256": sha256_file(model / "model.weights.h5")},
              "rows": [{"sigma": 0.4, "fid": 17.3}, {"sigma": 0.821, "fid": 24.0}, {"sigma": 1.5, "fid": 30.0}]}
    path = tmp_path / "search.json"
    path.write_text(json.dumps(search))
    chosen = publish.chosen_two_step_sigma(path, model)
    assert (chosen["sigma"], chosen["fid"], chosen["recorded_fid"]) == (0.4, 17.3, 24.0)
    assert chosen["sigmas_scored"] == [0.4, 0.821, 1.5]
    text = publish.sigma_choice({"two_step_sigma_search": chosen})
    assert "among 0.4, 0.821, 1.5: fid2k_2step 17.30 against 24.00 at the recipe's 0.821" in text
    assert publish.sigma_choice({}) == ""
    judged = dict(search, rows=[dict(search["rows"][0], judge_fd=19.7), dict(search["rows"][1], judge_fd=10.6),
                                search["rows"][2]])
    path.write_text(json.dumps(judged))
    with pytest.raises(ValueError, match="digit judge's distance rises"):
        publish.chosen_two_step_sigma(path, model)
    judged["rows"][0]["judge_fd"] = 9.0  # both distances agree: published
    path.write_text(json.dumps(judged))
    assert publish.chosen_two_step_sigma(path, model)["sigma"] == 0.4
    other = dict(search, key={"weights_sha256": "0" * 64})
    path.write_text(json.dumps(other))
    with pytest.raises(ValueError, match="other weights"):
        publish.chosen_two_step_sigma(path, model)

    source_config = read_json(model / "config.json")
    copy = publish.with_two_step_sigma(model, 0.4, tmp_path / "copy")
    config = read_json(copy / "config.json")
    assert config["sampling"]["sigmas_2step"] == [80.0, 0.4] and config["training"]["two_step_sigma"] == 0.4
    verify_files(copy)  # every digest holds, config.json's updated
    assert read_json(model / "config.json") == source_config  # the source is untouched
    with pytest.raises(ValueError, match="between"):
        publish.with_two_step_sigma(model, 80.0, tmp_path / "bad")
    assert not (tmp_path / "bad").exists()


@pytest.mark.backend_independent
def test_publish_reuses_earlier_fids_only_at_the_published_sigmas():
    publish = load_script("scripts/zoo/publish.py")
    earlier = [{"metric": "fid10k_1step", "fid": 41.3, "sigmas": [80.0], "num": 10000},
               {"metric": "fid10k_2step", "fid": 21.7, "sigmas": [80.0, 0.821], "num": 10000}]
    computed = []

    def compute(steps):
        computed.append(steps)
        return {"metric": f"fid10k_{steps}step", "fid": 15.0, "sigmas": [80.0, 0.2][:steps], "num": 10000}

    sampling = {"sigmas_1step": [80.0], "sigmas_2step": [80.0, 0.2]}
    results = publish.fid_results(earlier, sampling, 10000, compute)
    assert computed == [2] and [r["fid"] for r in results] == [41.3, 15.0]
    computed.clear()
    assert publish.fid_results(earlier, dict(sampling, sigmas_2step=[80.0, 0.821]), 10000, compute) == earlier
    assert computed == []
    publish.fid_results(earlier, sampling, 2000, compute)  # another count: both computed
    assert computed == [1, 2]


@pytest.mark.backend_independent
def test_publish_reuses_the_published_entrys_results_only_for_the_same_weights(tmp_path, monkeypatch):
    publish = load_script("scripts/zoo/publish.py")
    entry = tmp_path / "zoo" / "mnist"
    entry.mkdir(parents=True)
    (entry / "model.weights.h5").write_bytes(b"weights A")
    fids = [{"metric": "fid10k_1step", "fid": 41.3, "sigmas": [80.0], "num": 10000,
             "reference": {"ref_sha256": "ref-a"}},
            {"metric": "fid10k_1step", "fid": 99.0, "sigmas": [80.0], "num": 10000,
             "reference": {"ref_sha256": "ref-b"}}]
    judged = [{"steps": 1, "num": 10000, "judge_recognisable": 0.9},
              {"steps": 2, "num": 10000, "judge_recognisable": 0.8}]
    (entry / "metadata.json").write_text(json.dumps(
        {"fid": fids, "judge": judged, "sigmas_1step": [80.0], "sigmas_2step": [80.0, 0.821]}))
    same, other = tmp_path / "same.h5", tmp_path / "other.h5"
    same.write_bytes(b"weights A")
    other.write_bytes(b"weights B")

    found = publish.published_results(entry, same, "ref-a")
    assert [r["fid"] for r in found["fid"]] == [41.3]  # only against the same reference statistics
    assert [r["sigmas"] for r in found["judge"]] == [[80.0], [80.0, 0.821]]
    assert publish.published_results(entry, other, "ref-a") == {"fid": [], "judge": []}
    assert publish.published_results(tmp_path / "zoo" / "none", same, "ref-a") == {"fid": [], "judge": []}

    class Model:
        image_shape = (32, 32, 1)

    import keras_ict.digit_judge

    judged_at = []
    monkeypatch.setattr(keras_ict.digit_judge, "judge_model",
                        lambda model, num, sigmas: judged_at.append(sigmas) or {"judge_recognisable": 0.5})
    rows = publish.judge_rows(Model(), {"sigmas_1step": [80.0], "sigmas_2step": [80.0, 0.821]}, 10000, found["judge"])
    assert [r["judge_recognisable"] for r in rows] == [0.9, 0.8] and judged_at == []
    # Another two-step sigma: the 1-step row is reused, the 2-step sampler judged anew.
    rows = publish.judge_rows(Model(), {"sigmas_1step": [80.0], "sigmas_2step": [80.0, 0.2]}, 10000, found["judge"])
    assert [r["judge_recognisable"] for r in rows] == [0.9, 0.5] and judged_at == [[80.0, 0.2]]
    assert rows[1]["sigmas"] == [80.0, 0.2]
