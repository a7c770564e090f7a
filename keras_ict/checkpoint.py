"""Crash-safe training checkpoints and the final model folder of a run.

Layout of a run directory:
    config.json                  the resolved training config
    checkpoints/step_000500/     trainer.keras (student, EMA, optimizer, step, seed states) + state.json
    checkpoints/latest           name of the newest complete checkpoint
    final/                       config.json + model.weights.h5 (EMA) + metadata.json: `keras_ict.from_preset`

Every write goes to a temporary name first and is renamed into place, so a kill at any moment leaves the
previous checkpoint (and `latest`) intact.
"""

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path


@contextlib.contextmanager
def atomic_output(path, suffix=".tmp"):
    """Yield a temp path beside `path`; on success it is renamed onto `path`, on failure removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600 files
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def atomic_write_text(path, text):
    with atomic_output(path) as tmp:
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())


def write_json(path, data):
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def read_json(path):
    with open(path) as f:
        return json.load(f)


def sha256_file(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _publish_dir(tmp_dir, final_dir):
    """Rename a fully written temp folder into place, replacing an older one of the same name."""
    final_dir = Path(final_dir)
    if final_dir.exists():
        old = final_dir.with_name(f".{final_dir.name}.old")
        if old.exists():
            shutil.rmtree(old)
        os.replace(final_dir, old)
        os.replace(tmp_dir, final_dir)
        shutil.rmtree(old)
    else:
        os.replace(tmp_dir, final_dir)


def remove_stale_temporaries(folder, prefixes):
    """Delete temporary files/folders a killed writer left in `folder` (one writer per run is assumed)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for path in folder.iterdir():
        if path.name.startswith(tuple(prefixes)):
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
            removed.append(path.name)
    return removed


def save_checkpoint(trainer, run_dir, extra_state=None, keep=2):
    """Write checkpoints/step_XXXXXX/ for the trainer's current step and point `latest` at it."""
    import keras

    step = int(keras.ops.convert_to_numpy(trainer.step))
    root = Path(run_dir) / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(root, (".step_", ".latest."))
    name = f"step_{step:09d}"
    if not ((root / name / "trainer.keras").is_file() and (root / name / "state.json").is_file()):
        # (A complete checkpoint of the same step holds the same state: it is kept, not rewritten.)
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=root))
        try:
            trainer.save(tmp / "trainer.keras")
            write_json(tmp / "state.json", dict(extra_state or {}, step=step))
            if (root / name).exists():  # an incomplete leftover of a killed write
                shutil.rmtree(root / name)
            os.replace(tmp, root / name)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    atomic_write_text(root / "latest", name + "\n")
    complete = sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith("step_"))
    for old in complete[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return root / name


def latest_checkpoint(run_dir):
    """The newest complete checkpoint folder, or None."""
    root = Path(run_dir) / "checkpoints"
    pointer = root / "latest"
    if not pointer.is_file():
        return None
    path = root / pointer.read_text().strip()
    if not (path / "trainer.keras").is_file() or not (path / "state.json").is_file():
        raise RuntimeError(f"checkpoint {path} named by {pointer} is incomplete; remove it or start with --fresh")
    return path


def load_checkpoint(path):
    """(trainer, state dict) from a checkpoint folder; the trainer comes back compiled with its optimizer state."""
    import keras

    import keras_ict

    keras_ict._load_all()  # registers the serializable classes

    try:
        trainer = keras.saving.load_model(Path(path) / "trainer.keras", safe_mode=True)
    except Exception as e:  # a damaged zip or h5 inside raises many types
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise ValueError(f"checkpoint {Path(path) / 'trainer.keras'} cannot be loaded ({first})") from None
    return trainer, read_json(Path(path) / "state.json")


def save_final(trainer, folder, model_cfg, metadata, samples=None):
    """Write a from_preset-loadable folder: config.json, model.weights.h5 (EMA), metadata.json with sha256s."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(folder.parent, (f".{folder.name}.",))
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        trainer.ema_model.save_weights(tmp / "model.weights.h5")
        write_json(tmp / "config.json", model_cfg)
        if samples:
            from keras_ict.sampling import save_image_grid

            for filename, images in samples.items():
                save_image_grid(images, tmp / filename, ncols=8)
        files = {p.name: sha256_file(p) for p in sorted(tmp.iterdir()) if p.is_file()}
        write_json(tmp / "metadata.json", dict(metadata, files=files))
        _publish_dir(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def atomic_write_bytes_npz(path, **arrays):
    """np.savez to a temp name in the target folder, then rename."""
    import numpy as np

    with atomic_output(path, suffix=".npz") as tmp:
        np.savez(tmp, **arrays)
