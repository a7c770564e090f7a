"""keras-ict: improved consistency training (Song & Dhariwal, ICLR 2024) in Keras 3, on any backend."""

from keras_ict import losses, networks, optimizers, schedules
from keras_ict.parameterization import ConsistencyModel
from keras_ict.sampling import generate, image_grid, save_image_grid, to_uint8
from keras_ict.trainer import ConsistencyTrainer

__version__ = "0.1.0"

__all__ = [
    "ConsistencyModel",
    "ConsistencyTrainer",
    "generate",
    "image_grid",
    "losses",
    "networks",
    "optimizers",
    "save_image_grid",
    "schedules",
    "to_uint8",
]
