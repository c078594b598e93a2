"""The bench/train.py comparison on a GPU: resnet18 at 224 px, mixed precision and channels_last.

Store-fed training (decoded-image cache, per-epoch augmentation on DataLoader workers, pinned memory) vs
the same model and batch size fed from pre-decoded tensors already on the GPU (the compute-bound limit);
prints images/s of both and the ratio (goal ≥ 0.9), plus the first epoch and seed mode. Refuses to run
without CUDA unless --device is given (a CPU run with small sizes checks the script itself).

    python bench/gpu.py [--per-label 500] [--batch 128] [--workers 8] [--rounds 3] [--amp auto]
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("bench_train", HERE / "train.py")
bench_train = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench_train)  # bench/ is not a package; its train.py also fixes sys.path


def gpu_command(batch: int, side: int, epochs: int) -> dict:
    return {
        "model_name": "gpu-bench",
        "labels": ["circle", "square", "triangle", "star"],
        "optimizer": {"name": "SGD", "lr": 0.05, "momentum": 0.9},
        "batch_size": batch,
        "epochs": epochs,
        "image_ops": [{"resize": {"size": [side, side]}}, {"convert": {"mode": "RGB"}}],
        "transform": {"ToTensor": True, "Normalize": {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]},
                      "RandomHorizontalFlip": True},
        "model": {"preset": "resnet18"},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-label", type=int, default=500)
    parser.add_argument("--stored-size", type=int, default=256, help="stored image side before the resize")
    parser.add_argument("--side", type=int, default=224)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--amp", default="auto", choices=["auto", "bf16", "fp16", "off"])
    parser.add_argument("--device", default=None, help="default: cuda (the point of this bench)")
    parser.add_argument("--cache-mb", type=int, default=8192)
    args = parser.parse_args()
    if args.device is None and not torch.cuda.is_available():
        print("bench/gpu.py: no CUDA device here; run it on a GPU machine (or pass --device cpu to check the script)")
        return 0
    device = args.device or "cuda"
    if device.startswith("cuda"):
        torch.backends.cudnn.benchmark = True  # fixed input shapes: let cuDNN pick its fastest kernels
        print(f"GPU: {torch.cuda.get_device_name()}")
    command = gpu_command(args.batch, args.side, 1)
    result = bench_train.compare(command, args.per_label, args.stored_size, args.rounds, args.workers, device,
                                 args.amp, args.cache_mb)
    bench_train.print_comparison(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
