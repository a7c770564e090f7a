"""EDM-style U-Nets (DDPM++ / NCSN++ `SongUNet`, ADM `DhariwalUNet`) in Keras 3, channels-last."""

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
from .presets import NETWORK_PRESETS, network_from_preset
from .song_unet import SongUNet

__all__ = [
    "Conv2d",
    "DhariwalUNet",
    "EDM_CLASSES",
    "FourierEmbedding",
    "GroupNorm",
    "LabelDropout",
    "NETWORK_CLASSES",
    "Linear",
    "NETWORK_PRESETS",
    "PositionalEmbedding",
    "ScaledSum",
    "SongUNet",
    "UNetBlock",
    "edm_state_dict",
    "from_edm_config",
    "load_edm_state_dict",
    "network_class",
    "network_from_preset",
]
