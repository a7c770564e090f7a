"""The network classes a config may name ("class": "SongUNet"): the one registry that presets, model folders
and the EDM importer look names up in."""

from .dhariwal_unet import DhariwalUNet
from .song_unet import SongUNet

NETWORK_CLASSES = {"SongUNet": SongUNet, "DhariwalUNet": DhariwalUNet}


def network_class(name):
    if name not in NETWORK_CLASSES:
        raise ValueError(f"unknown network class {name!r}; known: {', '.join(sorted(NETWORK_CLASSES))}")
    return NETWORK_CLASSES[name]
