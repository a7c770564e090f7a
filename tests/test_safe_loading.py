"""Loading never runs code from a file unless the caller says it trusts it.

Every malicious file here carries a payload that would create a marker file if it ran; each test checks that
loading is refused with a message naming the problem and that the marker was never created.
"""

import os

import keras
import numpy as np
import pytest

from keras_ict import checkpoint, data, fid
from keras_ict.export import export
from keras_ict.networks import SongUNet, edm_state_dict, load_edm_state_dict

TINY = dict(img_resolution=8, in_channels=1, out_channels=1, model_channels=8, channel_mult=[1], num_blocks=1,
            attn_resolutions=[], embedding_type="fourier", channel_mult_noise=2, encoder_type="residual",
            decoder_type="standard", resample_filter=[1, 3, 3, 1])


class Payload:
    """Unpickling this creates `marker`: stands for arbitrary code in a pickle."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.backend_independent
def test_pickled_code_in_a_torch_state_dict_is_refused(tmp_path):
    torch = pytest.importorskip("torch")
    marker = tmp_path / "ran"
    net = SongUNet(**TINY)
    state = {k: torch.from_numpy(np.asarray(v)) for k, v in edm_state_dict(net).items()}
    torch.save(dict(state, extra=Payload(marker)), tmp_path / "evil.pt")
    with pytest.raises(ValueError, match="pickled Python objects.*trust_pickle=True"):
        load_edm_state_dict(net, tmp_path / "evil.pt")
    assert not marker.exists()

    # Tensors only: loads without trusting anything.
    torch.save(state, tmp_path / "plain.pt")
    assert load_edm_state_dict(SongUNet(**TINY), tmp_path / "plain.pt") is not None


def _object_npz(path, marker, **arrays):
    np.savez(path, **arrays, payload=np.array([Payload(marker)], dtype=object))


@pytest.mark.backend_independent
def test_pickled_objects_in_npz_files_are_never_unpickled(tmp_path):
    marker = tmp_path / "ran"
    images = np.zeros((4, 8, 8, 1), np.uint8)
    dataset = tmp_path / "data.npz"
    np.savez(dataset, x_train=np.array([Payload(marker)] * 4, dtype=object))
    with pytest.raises(ValueError, match="data.npz.*object array"):
        data.load_dataset(str(dataset), image_size=8, channels=1, batch_size=2)
    assert not marker.exists()

    stats = tmp_path / "stats.npz"
    np.savez(stats, mu=np.array([Payload(marker)], dtype=object), sigma=np.eye(2))
    with pytest.raises(ValueError, match="stats.npz"):
        fid.load_statistics(stats)
    assert not marker.exists()

    weights = tmp_path / "weights.npz"
    _object_npz(weights, marker, x_train=images)
    with pytest.raises(ValueError, match="weights.npz.*object arrays"):
        load_edm_state_dict(SongUNet(**TINY), weights)
    assert not marker.exists()


def _lambda_model(path, marker):
    payload = str(marker)
    inputs = keras.Input((8, 8, 1))
    outputs = keras.layers.Lambda(lambda x: x + float(len(open(payload, "w").name) * 0))(inputs)
    keras.Model(inputs, outputs).save(path)


def test_a_keras_file_with_python_code_is_refused_before_anything_is_written(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "evil.keras"
    _lambda_model(path, marker)
    if marker.exists():  # building the model ran the lambda once; only loading is under test
        os.remove(marker)
    out = tmp_path / "export"
    with pytest.raises(ValueError, match="(?i)lambda|safe_mode"):
        export(path, out)
    assert not marker.exists() and not out.exists()


def test_a_checkpoint_whose_trainer_file_holds_python_code_is_refused(tmp_path):
    marker = tmp_path / "ran"
    folder = tmp_path / "checkpoints" / "step_000000001"
    folder.mkdir(parents=True)
    _lambda_model(folder / "trainer.keras", marker)
    if marker.exists():
        os.remove(marker)
    with pytest.raises(ValueError, match="Lambda") as info:
        checkpoint.load_checkpoint(folder)
    assert str(folder) in str(info.value)
    assert not marker.exists()
