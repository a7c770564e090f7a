"""Where a run's first weights come from (`init`, `keras-ict train --init`): another run, a zoo entry or an EDM
state dict. Consistency tuning starts a consistency model from a diffusion model's network this way; the network
weights are copied, and the parametrisation is the new run's (`EDMDenoiser` -> `ConsistencyModel`: EDM's
scalings are replaced by the boundary-condition ones, so f(x, sigma_min) = x holds from the first step).

Accepted `init` values:
  * a run folder (its `final/` is used) or a model folder (`config.json` + `model.weights.h5`: a run's final/ or
    a zoo entry folder), or a zoo entry name: its EMA network weights;
  * an EDM state dict, `.npz` or (with `trust_pickle`) `.pt` / `.pth`: the network's tensors, with or without
    EDM's preconditioner prefix `model.` (keras_ict.networks.load_edm_state_dict).
The network architecture must be the run's (dropout rates may differ: they hold no weights), with one exception:
a class-conditional run may start from an unconditional model of the same architecture (label_dim 0). Its label
embedding (`map_label`, the only weights the source lacks) then starts at zero, so the run starts as exactly the
source model and learns the classes on top of it (class-conditional tuning).
"""

from pathlib import Path

import numpy as np

_STATE_DICT_SUFFIXES = (".npz", ".pt", ".pth")
_WEIGHTLESS_FIELDS = ("dropout", "label_dropout")


def _model_folder(init):
    """The model folder `init` names, or None when it names a state-dict file."""
    from keras_ict.zoo import _resolve

    path = Path(str(init)).expanduser()
    if path.is_file():
        if path.suffix.lower() not in _STATE_DICT_SUFFIXES:
            raise ValueError(f"init {init}: a file must be an EDM state dict ({', '.join(_STATE_DICT_SUFFIXES)})")
        return None
    if path.is_dir() and (path / "final").is_dir() and not (path / "model.weights.h5").is_file():
        path = path / "final"
    elif path.is_dir() and (path / "config.json").is_file() and not (path / "model.weights.h5").is_file():
        raise ValueError(f"init {init}: the run in this folder has not finished (no final/); wait for it or pass a "
                         "model folder")
    try:
        folder = _resolve(path if path.is_dir() else str(init))
    except FileNotFoundError as e:
        raise FileNotFoundError(f"init {init}: not a run folder, model folder, zoo entry or state-dict file ({e})") from None
    for name in ("config.json", "model.weights.h5"):
        if not (folder / name).is_file():
            raise FileNotFoundError(f"init {init}: {folder} is not a model folder ({name} is missing)")
    return folder


def _comparable(network_cfg):
    return {"class": network_cfg["class"],
            "config": {k: v for k, v in network_cfg["config"].items() if k not in _WEIGHTLESS_FIELDS}}


def _adds_labels(theirs, ours):
    """True where `ours` is `theirs` with class conditioning added (the source unconditional, the run not)."""
    if theirs["class"] != ours["class"] or theirs["config"].get("label_dim", 0) or not ours["config"].get("label_dim"):
        return False
    strip = ("label_dim",)
    return ({k: v for k, v in theirs["config"].items() if k not in strip}
            == {k: v for k, v in ours["config"].items() if k not in strip})


def check_init(config):
    """Raise ValueError / FileNotFoundError naming the problem with config["init"], before anything is written:
    a source that does not exist, another architecture, or a pickled file without trust_pickle."""
    from keras_ict.files import read_json
    from keras_ict.recipes import model_config

    init = config["init"]
    folder = _model_folder(init)
    if folder is None:
        if Path(str(init)).suffix.lower() != ".npz" and not config["trust_pickle"]:
            raise ValueError(f"init {init} is a pickled torch file, which can run code when loaded; convert it to .npz "
                             "or set trust_pickle=true (--set trust_pickle=true) if you trust its source")
        return None
    theirs = _comparable(read_json(folder / "config.json")["network"])
    ours = _comparable(model_config(config)["network"])
    if theirs != ours and not _adds_labels(theirs, ours):
        differing = sorted(k for k in set(theirs["config"]) | set(ours["config"])
                           if theirs["config"].get(k) != ours["config"].get(k))
        what = f"class {theirs['class']} vs {ours['class']}" if theirs["class"] != ours["class"] else \
            ", ".join(f"{k}: {theirs['config'].get(k)!r} vs {ours['config'].get(k)!r}" for k in differing[:5])
        raise ValueError(f"init {init}: its network is not this run's ({what})")
    return folder


def initialize_trainer(trainer, config):
    """Copy the network weights of config["init"] into the trainer's student and its EMA; returns the source."""
    from keras_ict.networks import load_edm_state_dict
    from keras_ict.zoo import from_preset

    folder = check_init(config)
    network = trainer.model.network
    if folder is None:
        try:
            load_edm_state_dict(network, str(config["init"]), trust_pickle=config["trust_pickle"])
        except ValueError as plain:
            try:  # the state dict of an EDM preconditioner (EDMPrecond / ECMPrecond) holds the network as `model.`
                load_edm_state_dict(network, str(config["init"]), trust_pickle=config["trust_pickle"], prefix="model.")
            except ValueError:
                raise plain from None
        source = config["init"]
    else:
        source_model = from_preset(folder)
        if source_model.label_dim == trainer.model.label_dim:
            _copy_weights(source_model.network, network)
        else:
            _copy_weights_adding_labels(source_model.network, network)
        source = folder
    _copy_weights(network, trainer.ema_model.network)
    return source


def _copy_weights_adding_labels(source, target):
    """An unconditional network's weights into a class-conditional one of the same architecture; the label
    embedding, which the source lacks, is set to zero (the conditional network then computes the source's output
    for every label)."""
    from keras_ict.networks import edm_state_dict, load_edm_state_dict
    from keras_ict.networks.edm_import import _expected_shape

    state = edm_state_dict(source)
    added = {name: np.zeros(_expected_shape(kind, variable), np.float32)
             for name, (kind, variable) in target.edm_tensor_table().items() if name not in state}
    if not added or any(not name.startswith("map_label.") for name in added):
        raise ValueError(f"init: expected only the label embedding to be new, got {sorted(added)}")
    load_edm_state_dict(target, {**state, **added})


def _copy_weights(source, target):
    # Weights only: the dropout layers' seed states stay the run's own (they are the run's random stream).
    pairs = [(s, t) for s, t in zip(source.weights, target.weights) if t.name != "seed_generator_state"]
    if len(source.weights) != len(target.weights) or any(tuple(s.shape) != tuple(t.shape) for s, t in pairs):
        raise ValueError("init: the source network's weights do not line up with this run's network")
    for s, t in pairs:
        t.assign(s.value)
