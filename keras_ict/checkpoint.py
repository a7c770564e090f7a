"""Crash-safe training checkpoints and the final model folder of a run.

Layout of a run directory:
    config.json                  the resolved training config
    checkpoints/step_000500/     trainer.keras (student, EMA, optimizer, step, seed states) + state.json
    checkpoints/latest           name of the newest complete checkpoint
    final/                       config.json + model.weights.h5 (EMA) + metadata.json: `keras_ict.from_preset`

Every write goes to a temporary name first and is renamed into place, so a kill at any moment leaves the
previous checkpoint (and `latest`) intact.
"""

import os
import shutil
import tempfile
from pathlib import Path

# The file helpers live in keras_ict.files; these names stay importable from here.
from keras_ict.files import (  # noqa: F401
    atomic_output,
    atomic_write_bytes_npz,
    atomic_write_text,
    publish_dir,
    read_json,
    remove_stale_temporaries,
    sha256_file,
    write_json,
)


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
    # The saved compile config holds the saving backend's resolved jit_compile (False on TensorFlow on a CPU and
    # on torch): resolved again here, or a run resumed on JAX would take its train steps op by op (3x slower on a
    # CPU, hundreds of times on a GPU).
    trainer.jit_compile = trainer._resolve_auto_jit_compile()
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
        publish_dir(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder
