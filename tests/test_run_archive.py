"""keras_ict.run_archive and `keras-ict pack` / `unpack`: a run moved to another folder (machine) resumes exactly,
the archive holds only the newest checkpoint, and damaged or unsafe archives are refused before anything is
written."""

import io
import json
import tarfile

import numpy as np
import pytest

import keras_ict
from keras_ict.cli import main
from keras_ict.run_archive import MANIFEST, pack_run, unpack_run
from test_training import _tiny, _weights


@pytest.mark.once("torch")
def test_a_packed_run_resumes_elsewhere_exactly_and_damage_is_refused(tmp_path, shared_dir, capsys):
    data = shared_dir / "datasets" / "mnist_small.npz"
    fields = dict(_tiny(data, 4), checkpoint_every=1, keep_checkpoints=3)
    here, there = tmp_path / "machine_a" / "run", tmp_path / "machine_b" / "run"
    assert keras_ict.train("mnist", here, stop_at_step=2, **fields).status == "stopped"

    archive = tmp_path / "run.tar.gz"
    assert main(["pack", "--run", str(here), "--out", str(archive)]) == 0
    assert "checkpoint step_000000002" in capsys.readouterr().out
    with tarfile.open(archive) as tar:
        names = tar.getnames()
    assert MANIFEST in names and "config.json" in names and "log.csv" in names
    assert sorted({n.split("/")[1] for n in names if n.startswith("checkpoints/") and n.count("/") > 1}) == [
        "step_000000002"]  # steps 1 and 2 are on disk here; only the newest travels
    assert (here / "checkpoints" / "step_000000001").is_dir()

    assert main(["unpack", str(archive), "--out", str(there)]) == 0
    assert not (there / MANIFEST).exists()
    assert keras_ict.train("mnist", there, **fields).status == "finished"
    assert keras_ict.train("mnist", here, **fields).status == "finished"
    (moved, moved_state), (stayed, stayed_state) = _weights(there), _weights(here)
    assert moved_state["step"] == stayed_state["step"] == 4
    for a, b in zip(moved, stayed):
        np.testing.assert_array_equal(a, b)

    # Refused before anything is written: a non-empty target, a damaged file, a truncated archive, an unsafe path.
    with pytest.raises(FileExistsError, match="not empty"):
        unpack_run(archive, there)
    damaged = tmp_path / "damaged.tar"
    with tarfile.open(archive) as src, tarfile.open(damaged, "w") as dst:
        for member in src.getmembers():
            content = src.extractfile(member).read() if member.isfile() else None
            if member.name == "log.csv":
                content = content.replace(b"step", b"stop", 1)
            dst.addfile(member, io.BytesIO(content) if content is not None else None)
    with pytest.raises(ValueError, match="log.csv does not match its sha256"):
        unpack_run(damaged, tmp_path / "d")
    truncated = tmp_path / "truncated.tar.gz"
    truncated.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    with pytest.raises(ValueError, match="cannot be read|missing"):
        unpack_run(truncated, tmp_path / "t")
    unsafe = tmp_path / "unsafe.tar"
    with tarfile.open(unsafe, "w") as tar:
        for name, payload in ((MANIFEST, json.dumps({"format": "keras-ict-run-archive/1", "files": {}}).encode()),
                              ("../escaped.txt", b"x")):
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    with pytest.raises(ValueError, match="cannot be read"):
        unpack_run(unsafe, tmp_path / "u" / "run")
    assert not (tmp_path / "u" / "escaped.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temporaries left
    for path in ("d", "t", "u/run"):
        assert not (tmp_path / path).exists()


@pytest.mark.backend_independent
def test_pack_and_unpack_reject_bad_input_in_one_line(tmp_path, capsys):
    (tmp_path / "not_a_run").mkdir()
    (tmp_path / "empty.tar").write_bytes(b"")
    with tarfile.open(tmp_path / "plain.tar", "w") as tar:  # a tar archive, but not one of a run
        tar.add(tmp_path / "empty.tar", arcname="x")
    cases = {
        ("pack", "--run", str(tmp_path / "not_a_run"), "--out", str(tmp_path / "a.tar")): "config.json is missing",
        ("pack", "--run", str(tmp_path / "not_a_run"), "--out", str(tmp_path / "a.zip")): "must end in .tar",
        ("unpack", str(tmp_path / "none.tar"), "--out", str(tmp_path / "r")): "no such archive",
        ("unpack", str(tmp_path / "empty.tar"), "--out", str(tmp_path / "r")): "cannot be read as a tar archive",
        ("unpack", str(tmp_path / "plain.tar"), "--out", str(tmp_path / "r")): "not a keras-ict run archive",
    }
    for args, message in cases.items():
        assert main(list(args)) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("keras-ict: error:") and message in err and "\n" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.tar", "not_a_run", "plain.tar"]
    with pytest.raises(ValueError, match="must end in"):
        pack_run(tmp_path / "not_a_run", tmp_path / "out.zip")
