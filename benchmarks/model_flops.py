"""Model FLOPs of one iCT train step and of one network evaluation, per image, for the SongUNet presets.

    python benchmarks/model_flops.py [--networks ncsnpp_mnist_small ncsnpp_cifar10 ...] [--json PATH]

Counted with torch's FlopCounterMode on the plain PyTorch SongUNet of `torch_baseline.py` (EDM parameter
names, parity-tested against EDM, the network the Keras trainer trains): matrix multiplies, convolutions and
attention, forward and backward, 2 FLOPs per multiply-add; normalisation, activations and the optimizer are
not counted (the usual convention for model FLOPs utilisation). One train step = teacher forward (no
gradients) + student forward + student backward, exactly `torch_baseline.ICTTrainer.step`.

`tables.py` multiplies these by a train row's images/s for its achieved TFLOP/s column, and divides by the
device's peak (`tables.py --peak-tflops`) for MFU. `--matmul-peak` also times a large square matrix multiply
on `--device` (float32; on CUDA 8192^3 in float32, TF32 and bfloat16): the achievable dense peak to put in --peak-tflops where the
vendor's figure is unknown (a CPU) or to check it (a GPU). ADM (DhariwalUNet) presets have no PyTorch counterpart in
benchmarks/ and are not counted.
"""

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import versions, write_json  # noqa: E402
from torch_baseline import ICTTrainer, SongUNet, resolve_without_keras  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_NETWORKS = ("ncsnpp_mnist_small", "ncsnpp_small", "ncsnpp_cifar10")


def count(network_name, batch=2):
    """{'params', 'forward_flops_per_image', 'train_step_flops_per_image'} for a SongUNet network preset."""
    training, kwargs = resolve_without_keras(network=network_name)
    torch.manual_seed(0)
    network = SongUNet(**kwargs)
    trainer = ICTTrainer(network, training)
    shape = (batch, network.in_channels, network.img_resolution, network.img_resolution)
    images = torch.zeros(shape).uniform_(-1, 1)
    labels = torch.zeros(batch, dtype=torch.long) if network.label_dim else None
    with FlopCounterMode(display=False) as step_counter:
        trainer.step(images, labels)
    trainer.f.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as forward_counter:
        trainer.f(images, torch.full((batch,), 1.0), labels)
    return {
        "network": network_name,
        "params": sum(p.numel() for p in network.parameters()),
        "resolution": network.img_resolution,
        "forward_flops_per_image": forward_counter.get_total_flops() / batch,
        "train_step_flops_per_image": step_counter.get_total_flops() / batch,
    }


def matmul_tflops(device, dtype, n=4096, repeats=10, tf32=False):
    """Best-of-`repeats` TFLOP/s of an n x n x n matrix multiply (`tf32`: float32 on TF32 tensor cores)."""
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    sync = torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)
    allowed = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = tf32
    try:
        best = float("inf")
        for _ in range(repeats + 1):  # the first is a warm-up
            sync()
            start = time.perf_counter()
            torch.mm(a, b)
            sync()
            best = min(best, time.perf_counter() - start)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = allowed
    return 2 * n**3 / best / 1e12


def _cpu_name():
    # keras_ict.callbacks.cpu_name without importing keras_ict: this script runs where Keras is not installed.
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--networks", nargs="+", default=list(DEFAULT_NETWORKS))
    parser.add_argument("--json", default=str(RESULTS / "model_flops.json"))
    parser.add_argument("--matmul-peak", action="store_true", help="also time a large matrix multiply on --device")
    parser.add_argument("--device", default="cpu", help="for --matmul-peak")
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count())
    rows = [count(name) for name in args.networks]
    peaks = {}
    if args.matmul_peak:
        peaks = {"float32": matmul_tflops(args.device, torch.float32)}
        if torch.device(args.device).type == "cuda":  # large enough to reach a GPU's peak
            peaks = {"float32": matmul_tflops(args.device, torch.float32, n=8192),
                     "tfloat32": matmul_tflops(args.device, torch.float32, n=8192, tf32=True),
                     "bfloat16": matmul_tflops(args.device, torch.bfloat16, n=8192)}
        device_name = torch.cuda.get_device_name(args.device) if torch.device(args.device).type == "cuda" else _cpu_name()
        peaks["device_name"] = device_name
        print(f"matmul peak on {args.device} ({device_name}): "
              + ", ".join(f"{k} {v:.3f} TFLOP/s" for k, v in peaks.items() if k != "device_name"))
    print(f"{'network':<20} {'params':>12} {'forward GFLOP/img':>18} {'train step GFLOP/img':>21} {'ratio':>6}")
    for r in rows:
        print(f"{r['network']:<20} {r['params']:>12,} {r['forward_flops_per_image'] / 1e9:>18.3f} "
              f"{r['train_step_flops_per_image'] / 1e9:>21.3f} "
              f"{r['train_step_flops_per_image'] / r['forward_flops_per_image']:>6.2f}")
    report = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
              "versions": versions(("torch", "numpy")), "config": vars(args), "results": rows,
              "matmul_tflops": peaks}
    print(f"wrote {write_json(args.json, report)}")


if __name__ == "__main__":
    main()
