"""EDM-style U-Nets (DDPM++ / NCSN++ `SongUNet`, ADM `DhariwalUNet`) in Keras 3, channels-last."""

from .architectures import ARCHITECTURES, NETWORK_PRESETS, build_architecture, network_from_preset
from .classes import NETWORK_CLASSES, network_class
from .dhariwal_unet import DhariwalUNet
from .edm_import import EDM_CLASSES, edm_state_dict, from_edm_config, load_edm_state_dict
from .layers import (
    Conv2d,
    FourierEmbedding,
    GroupNorm,
    LabelDropout,
    Linear,
    PositionalEmbedding,
    ScaledSum,
    UNetBlock,
)
from .song_unet import SongUNet

__all__ = [
    "ARCHITECTURES",
    "NETWORK_PRESETS",
    "Conv2d",
    "DhariwalUNet",
    "EDM_CLASSES",
    "FourierEmbedding",
    "GroupNorm",
    "LabelDropout",
    "NETWORK_CLASSES",
    "Linear",
    "PositionalEmbedding",
    "ScaledSum",
    "SongUNet",
    "UNetBlock",
    "build_architecture",
    "edm_state_dict",
    "from_edm_config",
    "load_edm_state_dict",
    "network_class",
    "network_from_preset",
]
