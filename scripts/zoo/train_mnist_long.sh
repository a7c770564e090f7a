#!/usr/bin/env bash
# The long `mnist` run of issue 16 under its session-14 name: the same as `scripts/zoo/train_long.sh mnist BUDGET`
# (same run folder ~/.cache/keras_ict/runs/zoo/mnist-long, same archive carried/mnist-long.tar).
exec "$(dirname "$0")/train_long.sh" mnist "$@"
