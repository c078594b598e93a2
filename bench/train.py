"""Is the data pipeline the bottleneck? Training images/s from the store vs from tensors already in memory.

The default (demo) command's model and batch size are trained side by side, in alternating rounds so that
machine load hits both alike:
  - store:    the real trainer's loaders (store → decode once into the cache → per-epoch augmentation on
              DataLoader workers), steady state = epochs after the first;
  - memory:   the same model, batch size and step code fed from pre-decoded tensors indexed in memory
              (on the training device), no loader at all: the compute-bound limit.
Printed: images/s of both, the ratio (goal ≥ 0.9), the first (decoding) epoch, and seed mode
(`steps`: random batches) through the same loaders. bench/gpu.py runs the same comparison on a GPU.

    python bench/train.py [--per-label 300] [--rounds 3] [--workers -1]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from models.command import Command  # noqa: E402
from models.defaults import demo_command  # noqa: E402
from models.validation import build_network, validate_command  # noqa: E402
from store import open_store  # noqa: E402
from tasks.ingest import Ingestor, folder_images, ingest_paths  # noqa: E402
from tasks.synthetic import generate  # noqa: E402
from tasks.training.data import build_manifest  # noqa: E402
from tasks.training.device import cpu_threads, make_scaler, pick_device, pick_precision, prepare_model  # noqa: E402
from tasks.training.pipeline import build_loaders  # noqa: E402
from tasks.training.resume import build_objectives  # noqa: E402
from tasks.training.steps import Stepper  # noqa: E402


def fill_store(root: Path, labels: list[str], per_label: int, size: int) -> str:
    url = f"sqlite:///{root / 'store.db'}"
    generate(root / "images", labels, per_label, size, seed=0)
    ingest_paths(Ingestor(open_store(url)), list(folder_images(root / "images")))
    return url


def make_stepper(command: Command, input_shape: tuple[int, ...], device: torch.device, amp: str) -> Stepper:
    torch.manual_seed(0)
    precision = pick_precision(device, amp)
    model = prepare_model(build_network(command, input_shape).module, device, precision)
    objectives = build_objectives(command, model)
    return Stepper(model, objectives.criterion, objectives.optimizer, make_scaler(device, precision), device,
                   precision, command.batch_size)


class MemoryBatches:
    """Pre-decoded tensors on the training device: one random permutation per epoch, batches by indexing."""

    def __init__(self, images: torch.Tensor, targets: torch.Tensor, batch_size: int):
        self.images, self.targets, self.batch_size = images, targets, batch_size

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = torch.randperm(len(self.targets), device=self.targets.device)
        for start in range(0, len(order), self.batch_size):
            index = order[start:start + self.batch_size]
            yield self.images[index], self.targets[index]


def timed_epoch(stepper: Stepper, batches: Any, epoch: int) -> float:
    started = time.perf_counter()
    images = stepper.train_epoch(batches, epoch)["images"]  # ends with .item(): the device has finished
    return images / (time.perf_counter() - started)


def compare(raw_command: dict[str, Any], per_label: int, size: int, rounds: int, workers: int, device: str,
            amp: str = "auto", cache_mb: int = 4096) -> dict[str, Any]:
    command, _ = validate_command(raw_command)
    dev = pick_device(device)
    with tempfile.TemporaryDirectory() as tmp:
        url = fill_store(Path(tmp), command.label_names(), per_label, size)
        manifest = build_manifest(open_store(url), command.label_names())
        started = time.perf_counter()
        loaders = build_loaders(command, url, manifest, workers, dev, False, cache_mb * 2**20)
        store_stepper = make_stepper(command, loaders.input_shape, dev, amp)
        with cpu_threads(dev, loaders.cache_report["workers"]):
            loaders.sampler.set_epoch(1)
            first = store_stepper.train_epoch(loaders.train, 1)["images"] / (time.perf_counter() - started)
            dataset = loaders.train.dataset
            images = torch.stack([dataset[(0, i)][0] for i in range(len(dataset))]).to(dev)
            memory = MemoryBatches(images, torch.tensor(dataset.targets, device=dev), command.batch_size)
            mem_stepper = make_stepper(command, loaders.input_shape, dev, amp)
            timed_epoch(mem_stepper, memory, 1)  # warm-up: allocator, kernels
            store_rates, mem_rates, seed_rates = [], [], []
            steps = len(loaders.train)  # seed mode: as many random batches as one epoch has
            for round_no in range(2, 2 + rounds):
                loaders.sampler.set_epoch(round_no)
                store_rates.append(timed_epoch(store_stepper, loaders.train, round_no))
                mem_rates.append(timed_epoch(mem_stepper, memory, round_no))
                loaders.sampler.set_epoch(1000 + round_no, steps * command.batch_size)
                seed_rates.append(timed_epoch(store_stepper, loaders.train, 1000 + round_no))
            threads = torch.get_num_threads()
        loaders.close()
    return {
        "command": command, "device": dev, "precision": store_stepper.precision.name, "threads": threads,
        "input_shape": loaders.input_shape, "images": len(images), "report": loaders.cache_report, "first": first,
        "store": statistics.median(store_rates), "memory": statistics.median(mem_rates),
        "seed": statistics.median(seed_rates), "seed_steps": steps, "rounds": rounds,
    }


def print_comparison(r: dict[str, Any]) -> None:
    command = r["command"]
    print(f"{command.model.preset} on {tuple(r['input_shape'])}, batch {command.batch_size}, {r['images']} training "
          f"images, device {r['device']} ({r['precision']}), {r['threads']} threads, loader workers "
          f"{r['report']['workers']}, cache {r['report']['cache_mb']} MB")
    print(f"  first epoch (decode into cache + train): {r['first']:9.0f} images/s")
    print(f"  store-fed, steady state (median of {r['rounds']}):  {r['store']:9.0f} images/s")
    print(f"  in-memory tensors (compute-bound limit):  {r['memory']:9.0f} images/s")
    print(f"  ratio store/memory: {r['store'] / r['memory']:.2f}  (goal >= 0.9)")
    print(f"  seed mode, rounds of {r['seed_steps']} random batches (median): {r['seed']:9.0f} images/s "
          f"(ratio to memory {r['seed'] / r['memory']:.2f})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-label", type=int, default=300)
    parser.add_argument("--size", type=int, default=64, help="stored image side (the demo resizes to 32)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=-1)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    print_comparison(compare(demo_command(), args.per_label, args.size, args.rounds, args.workers, args.device))
    return 0


if __name__ == "__main__":
    sys.exit(main())
