"""Moving a run to another machine: one archive holding what resuming needs, and nothing that it does not.

A training run that outlives its machine (a preemptible VM, a notebook session, a CI job) is packed at the end
of one session and unpacked at the start of the next, where `keras-ict train --out RUN` (same flags) resumes it
exactly: the step, the weights, the EMA, the optimizer and every random stream live in the checkpoint.

    keras-ict pack --run runs/mnist --out mnist-run.tar
    keras-ict unpack mnist-run.tar --out runs/mnist

The archive holds the run folder (config.json, logs, final/ if present, TensorBoard events) with only the newest
complete checkpoint, plus `run_archive.json`: the sha256 of every file, checked on unpacking, so a damaged or
truncated archive is refused before anything is written in place of the run. Both directions go through a
temporary name that is renamed at the end: a kill leaves no half-written archive or run folder.
"""

import os
import shutil
import tarfile
import tempfile
from pathlib import Path

from keras_ict.files import atomic_output, publish_dir, read_json, sha256_file, write_json

__all__ = ["pack_run", "unpack_run", "MANIFEST"]

MANIFEST = "run_archive.json"
FORMAT = "keras-ict-run-archive/1"
_SUFFIXES = (".tar", ".tar.gz", ".tgz")


def _check_suffix(path, what):
    name = Path(path).name.lower()
    if not name.endswith(_SUFFIXES):
        raise ValueError(f"{what} must end in .tar, .tar.gz or .tgz, got {Path(path).name!r}")
    return "w:gz" if name.endswith((".tar.gz", ".tgz")) else "w"


def _files_to_pack(run_dir):
    """Paths (relative to the run) of everything resuming needs: older checkpoints and temporaries left out."""
    from keras_ict.checkpoint import latest_checkpoint

    run_dir = Path(run_dir)
    if not (run_dir / "config.json").is_file():
        raise FileNotFoundError(f"{run_dir} is not a keras-ict run folder: config.json is missing")
    try:
        latest = latest_checkpoint(run_dir)
    except RuntimeError as e:  # `latest` names an incomplete checkpoint
        raise ValueError(str(e)) from None
    files = []
    for path in sorted(run_dir.rglob("*")):
        rel = path.relative_to(run_dir)
        if not path.is_file() or path.is_symlink() or any(part.startswith(".") for part in rel.parts):
            continue  # temporaries of killed writers are hidden names
        if rel.parts[0] == "checkpoints" and len(rel.parts) > 2 and (latest is None or rel.parts[1] != latest.name):
            continue
        if rel.as_posix() == MANIFEST:
            continue
        files.append(rel)
    return files


def pack_run(run_dir, archive):
    """Write `archive` (.tar, or .tar.gz / .tgz compressed) from a run folder; returns the manifest dict.

    Raises FileNotFoundError / ValueError naming the problem (no run folder, bad suffix) before writing.
    """
    mode = _check_suffix(archive, "the archive")
    run_dir = Path(run_dir)
    files = _files_to_pack(run_dir)
    config = read_json(run_dir / "config.json")
    manifest = {
        "format": FORMAT,
        "preset": config.get("preset"),
        "total_steps": config.get("total_steps"),
        "checkpoint": next((f.parts[1] for f in files if f.parts[0] == "checkpoints" and len(f.parts) > 2), None),
        "files": {f.as_posix(): sha256_file(run_dir / f) for f in files},
    }
    with tempfile.TemporaryDirectory() as scratch, atomic_output(archive, suffix=".partial") as tmp:
        write_json(Path(scratch) / MANIFEST, manifest)
        with tarfile.open(tmp, mode) as tar:
            tar.add(Path(scratch) / MANIFEST, arcname=MANIFEST)
            for rel in files:
                tar.add(run_dir / rel, arcname=rel.as_posix(), recursive=False)
    return manifest


def unpack_run(archive, run_dir):
    """Restore a run folder from `pack_run`'s archive; returns the manifest dict.

    `run_dir` must not exist yet (or be an empty folder): unpacking never mixes two runs. Every file is checked
    against the manifest's sha256 before the folder is renamed into place.
    """
    archive, run_dir = Path(archive), Path(run_dir)
    _check_suffix(archive, "the archive")
    if not archive.is_file():
        raise FileNotFoundError(f"{archive}: no such archive")
    if run_dir.exists() and (not run_dir.is_dir() or any(run_dir.iterdir())):
        raise FileExistsError(f"{run_dir} exists and is not empty: unpack into a new folder (a run is never merged)")
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{run_dir.name}.", dir=run_dir.parent))
    try:
        try:
            with tarfile.open(archive) as tar:
                names = tar.getnames()
                if MANIFEST not in names:
                    raise ValueError(f"{archive} is not a keras-ict run archive ({MANIFEST} is missing)")
                tar.extractall(tmp, filter="data")  # refuses absolute paths, '..', links out of the folder
        except (tarfile.TarError, EOFError, OSError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ValueError(f"{archive} cannot be read as a tar archive ({first})") from None
        manifest = read_json(tmp / MANIFEST)
        if manifest.get("format") != FORMAT:
            raise ValueError(f"{archive}: unknown run archive format {manifest.get('format')!r}, expected {FORMAT!r}")
        for rel, digest in manifest["files"].items():
            path = tmp / rel
            if not path.is_file():
                raise ValueError(f"{archive}: {rel} listed in {MANIFEST} is missing (truncated archive?)")
            if sha256_file(path) != digest:
                raise ValueError(f"{archive}: {rel} does not match its sha256 in {MANIFEST} (damaged archive)")
        os.remove(tmp / MANIFEST)
        if run_dir.exists():
            run_dir.rmdir()  # the empty folder checked above
        publish_dir(tmp, run_dir, overwrite=False)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest
