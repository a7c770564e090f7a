"""Old home of the backend-specific helpers, kept as an alias: they live in `keras_ict.backends` now."""

from keras_ict.backends.distribution import (  # noqa: F401
    STRATEGIES,
    distribution_scope,
    num_replicas,
    predict_batch,
    replica_id,
    training_replicas,
)
from keras_ict.backends.kernels import (  # noqa: F401
    bias_add,
    no_grad,
    separable_fir_resampling,
    torch_channels_last_kernels,
    torch_conv2d_nhwc,
    torch_depthwise_conv_transpose2d_nhwc,
    torch_group_norm_nhwc,
)
from keras_ict.backends.torch_optimizer import torch_multi_tensor_optimizer, torch_radam_update  # noqa: F401
from keras_ict.backends.values import concrete_value  # noqa: F401
