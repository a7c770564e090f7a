"""Named network architectures (those of the iCT paper, plus small CPU ones): a class and its constructor config.

A training recipe names one in its "network" field; `build_architecture(name, **overrides)` builds it.
"""

import copy

from .classes import network_class

__all__ = ["ARCHITECTURES", "NETWORK_PRESETS", "build_architecture", "network_from_preset"]

_NCSNPP_CIFAR10 = {
    "img_resolution": 32,
    "in_channels": 3,
    "out_channels": 3,
    "label_dim": 0,
    "model_channels": 128,
    "channel_mult": [2, 2, 2],
    "channel_mult_emb": 4,
    "num_blocks": 4,
    "attn_resolutions": [16],
    "dropout": 0.3,
    "label_dropout": 0.0,
    "embedding_type": "fourier",
    "channel_mult_noise": 2,
    "encoder_type": "residual",
    "decoder_type": "standard",
    "resample_filter": [1, 3, 3, 1],
    "fourier_scale": 0.02,
}

_ADM_IMAGENET64 = {
    "img_resolution": 64,
    "in_channels": 3,
    "out_channels": 3,
    "label_dim": 1000,
    "model_channels": 192,
    "channel_mult": [1, 2, 3, 4],
    "channel_mult_emb": 4,
    "num_blocks": 3,
    "attn_resolutions": [32, 16, 8],
    "dropout": 0.2,
    "label_dropout": 0.0,
}

_SMALL = dict(
    _NCSNPP_CIFAR10,
    model_channels=32,
    channel_mult=[1, 2, 2],
    num_blocks=1,
    attn_resolutions=[8],
    dropout=0.1,
)

ARCHITECTURES = {
    "ncsnpp_cifar10": {
        "class": "SongUNet",
        "config": _NCSNPP_CIFAR10,
        "description": "NCSN++ of iCT for CIFAR-10 32x32, unconditional (56,395,523 params).",
    },
    "ncsnpp_cifar10_deep": {
        "class": "SongUNet",
        "config": dict(_NCSNPP_CIFAR10, num_blocks=8),
        "description": "Deep NCSN++ of iCT for CIFAR-10 (8 blocks per resolution).",
    },
    "ddpmpp_cifar10": {
        "class": "SongUNet",
        "config": dict(
            _NCSNPP_CIFAR10,
            embedding_type="positional",
            channel_mult_noise=1,
            encoder_type="standard",
            decoder_type="standard",
            resample_filter=[1, 1],
            fourier_scale=16.0,
        ),
        "description": "DDPM++ (EDM's CIFAR-10 network), unconditional (55,732,739 params).",
    },
    "adm_imagenet64": {
        "class": "DhariwalUNet",
        "config": _ADM_IMAGENET64,
        "description": "ADM of iCT for class-conditional ImageNet 64x64 (295,899,267 params).",
    },
    "adm_imagenet64_deep": {
        "class": "DhariwalUNet",
        "config": dict(_ADM_IMAGENET64, num_blocks=6),
        "description": "Deep ADM of iCT for ImageNet 64x64 (6 blocks per resolution).",
    },
    "ncsnpp_small": {
        "class": "SongUNet",
        "config": _SMALL,
        "description": "Small NCSN++ for 32x32 RGB, CPU-friendly smoke tests.",
    },
    "ncsnpp_mnist_small": {
        "class": "SongUNet",
        "config": dict(_SMALL, in_channels=1, out_channels=1),
        "description": "Small NCSN++ for 32x32 single-channel images (e.g. padded MNIST).",
    },
}

def build_architecture(name, **overrides):
    """Builds the architecture `name`; keyword arguments override its config entries."""
    if name not in ARCHITECTURES:
        raise ValueError(f"Unknown network architecture {name!r}; valid: {sorted(ARCHITECTURES)}.")
    entry = ARCHITECTURES[name]
    config = copy.deepcopy(entry["config"])
    config.update(overrides)
    return network_class(entry["class"])(**config)


# The names from before architectures had their own name.
NETWORK_PRESETS = ARCHITECTURES
network_from_preset = build_architecture
