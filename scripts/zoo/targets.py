"""Issue 16's quality targets for the CPU zoo entries: FID-10k with the zoo's protocol (seeds 0-9999, the committed
reference statistics), by number of sampling steps. `publish.py` puts them on the cards; this script prints them
as `budget_extrapolation.py` flags for the training-time FID-2k curve of a run:

    python scripts/zoo/targets.py mnist     # --target fid2k_1step=10 --target fid2k_2step=6
"""

import sys

TARGETS = {
    "mnist": {1: 10.0, 2: 6.0},
    "mnist-cond": {1: 10.0, 2: 6.0},
    "cifar10-small": {1: 60.0, 2: 45.0},
}


def extrapolation_flags(entry, metric_prefix="fid2k"):
    if entry not in TARGETS:
        raise SystemExit(f"no target for zoo entry {entry!r}; entries with targets: {', '.join(TARGETS)}")
    return " ".join(f"--target {metric_prefix}_{steps}step={value:g}" for steps, value in TARGETS[entry].items())


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(f"usage: {sys.argv[0]} ENTRY")
    print(extrapolation_flags(sys.argv[1]))
