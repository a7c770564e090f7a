"""All backend-specific code of keras-ict, one module per job; everything else is written with `keras.ops`.

* `values`        telling a concrete tensor from a traced one (value checks run only on concrete values)
* `distribution`  replicas, device counts and the multi-device scopes of each backend
* `kernels`       per-backend fast paths of the network layers (FIR form, torch channels-last kernels,
                  TensorFlow's fusable bias_add) and the teacher pass without autograd on torch
* `torch_optimizer`  RAdam's multi-tensor update on torch

The speed paths are measured in benchmarks/README.md; each has a test that it computes what the generic
`keras.ops` form computes.
"""
