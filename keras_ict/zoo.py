"""Loading trained models: `from_preset(name_or_path)` for zoo entries and run folders (RUN_DIR/final).

A model folder holds config.json (network + parametrisation + sampling sigmas), model.weights.h5 (EMA
weights) and metadata.json, whose `files` entry lists the sha256 of every file; loading verifies them and
refuses a changed file.
"""

import os
from pathlib import Path

from keras_ict.files import read_json, sha256_file
from keras_ict.recipes import MODEL_FORMAT


def zoo_dir():
    """Where named zoo entries live: $KERAS_ICT_ZOO, else the repository's zoo/ folder."""
    return Path(os.environ.get("KERAS_ICT_ZOO", Path(__file__).resolve().parents[1] / "zoo"))


def available():
    """Names of the zoo entries available locally (also `keras_ict.zoo.list()`, the name first published)."""
    root = zoo_dir()
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / "config.json").is_file())


list = available  # noqa: A001  (the public name the project fixed first; shadows the builtin inside this module only)


def _resolve(name_or_path):
    path = Path(name_or_path)
    if path.is_dir():
        return path
    candidate = zoo_dir() / str(name_or_path)
    if candidate.is_dir():
        return candidate
    names = available()
    if not zoo_dir().is_dir():
        where = "$KERAS_ICT_ZOO" if os.environ.get("KERAS_ICT_ZOO") else "the default zoo folder"
        raise FileNotFoundError(
            f"no model folder named {str(name_or_path)!r}, and {where} {zoo_dir()} does not exist (an installed "
            "package ships no zoo: set KERAS_ICT_ZOO to a folder of zoo entries, e.g. a clone's zoo/)"
        )
    raise FileNotFoundError(
        f"no model folder or zoo entry named {str(name_or_path)!r} in {zoo_dir()}"
        + (f"; zoo entries: {', '.join(names)}" if names else "")
    )


def verify_files(folder):
    """Check every file listed in metadata.json against its sha256; raise ValueError naming a mismatch."""
    folder = Path(folder)
    meta_path = folder / "metadata.json"
    if not meta_path.is_file():
        return {}
    metadata = read_json(meta_path)
    for filename, digest in metadata.get("files", {}).items():
        path = folder / filename
        if not path.is_file():
            raise ValueError(f"{folder}: file {filename} listed in metadata.json is missing")
        if sha256_file(path) != digest:
            raise ValueError(f"{folder}: {filename} does not match its sha256 in metadata.json (changed or corrupt)")
    return metadata


def from_preset(name_or_path, verify=True):
    """The EMA `ConsistencyModel` of a zoo entry or a run's final/ folder, weights loaded.

    The returned model carries `model.sampling` ({"sigmas_1step": [...], "sigmas_2step": [...]}) and
    `model.metadata` (metadata.json).
    """
    from keras_ict.recipes import build_consistency_model

    folder = _resolve(name_or_path)
    config_path, weights_path = folder / "config.json", folder / "model.weights.h5"
    for path in (config_path, weights_path):
        if not path.is_file():
            raise FileNotFoundError(f"{folder} is not a keras-ict model folder: {path.name} is missing")
    metadata = verify_files(folder) if verify else {}
    config = read_json(config_path)
    if config.get("format") != MODEL_FORMAT:
        raise ValueError(f"{config_path}: unknown format {config.get('format')!r}, expected {MODEL_FORMAT!r}")
    model = build_consistency_model(config).build_for_images()
    try:
        model.load_weights(weights_path)
    except Exception as e:  # h5py / Keras raise OSError, ValueError, KeyError... for damaged or foreign files
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise ValueError(f"{weights_path}: cannot load these weights into the model of config.json ({first})") from None
    model.sampling = config.get("sampling", {})
    model.metadata = metadata
    return model
