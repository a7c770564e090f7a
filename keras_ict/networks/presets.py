"""Old name of `keras_ict.networks.architectures`, kept as an alias module."""

from .architectures import ARCHITECTURES, NETWORK_PRESETS, build_architecture, network_from_preset  # noqa: F401
