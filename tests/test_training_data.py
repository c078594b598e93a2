"""The training data path: decoded cache, per-(epoch, index) augmentation, samplers, seed mode."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from models.command import Command
from models.preprocess import build_preprocess
from models.validation import validate_command
from store import open_store
from tasks.training.cache import build_cache
from tasks.training.data import EpochSampler, SampleDataset, StoreDecoder, TrainBatches, build_manifest
from tasks.training.loop import TrainOptions, round_plan, train
from tests.helpers import fill_synthetic, small_command

LABELS = ["circle", "square"]
NORMALIZE = {"mean": [0.5] * 3, "std": [0.5] * 3}


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # the machine's cores are shared; small models gain nothing from more threads
    yield
    torch.set_num_threads(before)


def _decoder(store_url: str, transform: dict) -> StoreDecoder:
    keys = [k for k, _ in build_manifest(open_store(store_url), LABELS).items["train"]]
    preprocess = build_preprocess([{"resize": {"size": [16, 16]}}], transform)
    return StoreDecoder(store_url, keys, preprocess)


def test_cache_holds_exactly_what_decoding_gives(workdir: Path, store_url: str) -> None:
    fill_synthetic(store_url, workdir / "images", LABELS, per_label=12)
    decoder = _decoder(store_url, {"ToTensor": True, "Normalize": NORMALIZE})
    cache = build_cache(decoder, len(decoder), workers=0, limit_bytes=2**30)
    assert cache is not None and len(cache) == len(decoder)
    for index in (0, len(decoder) - 1):
        assert torch.equal(cache(index), decoder(index))
    assert build_cache(decoder, len(decoder), workers=0, limit_bytes=100) is None  # over the limit: no cache


def test_cache_keeps_pil_images_when_augmentation_runs_before_to_tensor(workdir: Path, store_url: str) -> None:
    fill_synthetic(store_url, workdir / "images", LABELS, per_label=6)
    decoder = _decoder(store_url, {"RandomHorizontalFlip": True, "ToTensor": True})
    cache = build_cache(decoder, len(decoder), workers=0, limit_bytes=2**30)
    assert cache is not None and cache.as_pil
    assert list(cache(0).getdata()) == list(decoder(0).getdata())


def test_augmentation_depends_on_epoch_and_index_only(workdir: Path, store_url: str) -> None:
    fill_synthetic(store_url, workdir / "images", LABELS, per_label=12)
    preprocess = build_preprocess([{"resize": {"size": [16, 16]}}],
                                  {"ToTensor": True, "RandomRotation": {"degrees": 40}})
    decoder = _decoder(store_url, {"ToTensor": True})
    dataset = SampleDataset(decoder, [0] * len(decoder), preprocess.augmentation, seed=3)
    assert torch.equal(dataset[(1, 0)][0], dataset[(1, 0)][0])
    assert not torch.equal(dataset[(1, 0)][0], dataset[(2, 0)][0])  # a new epoch, a new augmentation
    sampler = EpochSampler(dataset.targets, seed=3)
    sampler.set_epoch(1)
    in_process = [b[0] for b in DataLoader(dataset, batch_size=8, sampler=sampler, num_workers=0)]
    on_worker = [b[0] for b in DataLoader(dataset, batch_size=8, sampler=sampler, num_workers=1)]
    assert all(torch.equal(a, b) for a, b in zip(in_process, on_worker, strict=True))


def test_epoch_sampler_permutes_and_balanced_sampler_balances() -> None:
    targets = [0] * 90 + [1] * 10
    sampler = EpochSampler(targets, seed=0)
    sampler.set_epoch(1)
    first = [i for _, i in sampler]
    assert sorted(first) == list(range(100))
    sampler.set_epoch(2)
    assert [i for _, i in sampler] != first
    balanced = EpochSampler(targets, seed=0, balanced=True)
    balanced.set_epoch(1, draws=2000)
    share = Counter(targets[i] for _, i in balanced)[1] / 2000
    assert 0.4 < share < 0.6


def test_seed_mode_plan_groups_steps_into_rounds() -> None:
    command = Command.model_validate(small_command(LABELS, steps=10, batch_size=16))
    assert round_plan(command, n_train=64) == [64, 64, 32]  # 4 + 4 + 2 steps of 16 random images
    assert round_plan(Command.model_validate(small_command(LABELS, epochs=3)), 64) == [None] * 3


def test_seed_mode_trains_exactly_the_asked_steps(workdir: Path, store_url: str) -> None:
    fill_synthetic(store_url, workdir / "images", LABELS, per_label=20, size=16)
    command, _ = validate_command(small_command(LABELS, steps=7, batch_size=8))
    result = train(command, open_store(store_url), TrainOptions(workdir / "runs", "seed", workers=0, balanced=True))
    assert result.extra["steps"] == 7
    assert sum(entry["images"] for entry in result.history) == 7 * 8
    assert result.extra["cache"]["train_cached"]


def test_training_without_cache_decodes_every_epoch(workdir: Path, store_url: str) -> None:
    fill_synthetic(store_url, workdir / "images", LABELS, per_label=12, size=16)
    command, _ = validate_command(small_command(LABELS, epochs=1))
    result = train(command, open_store(store_url), TrainOptions(workdir / "runs", "nc", workers=0, cache_mb=0))
    assert not result.extra["cache"]["train_cached"] and len(result.history) == 1


@pytest.mark.parametrize(("n", "batch_size", "sizes"), [
    (33, 16, [16, 17]), (34, 16, [16, 16, 2]), (32, 16, [16, 16]), (1, 16, [1]), (17, 16, [17]), (5, 2, [2, 3]),
])
def test_a_last_batch_of_one_joins_the_batch_before(n: int, batch_size: int, sizes: list[int]) -> None:
    batches = TrainBatches(list(range(n)), batch_size)
    got = list(batches)
    assert [len(b) for b in got] == sizes and len(batches) == len(sizes)
    assert sorted(i for b in got for i in b) == list(range(n))  # every sample, once


def test_batch_norm_trains_when_the_split_leaves_one_image_over(workdir: Path, store_url: str) -> None:
    fill_synthetic(store_url, workdir / "images", LABELS, per_label=40, size=16)
    n_train = len(build_manifest(open_store(store_url), LABELS).items["train"])
    layers = [{"name": "Flatten"}, {"name": "Linear", "in_features": "auto", "out_features": 8},
              {"name": "BatchNorm1d", "num_features": "auto"}, {"name": "ReLU"},
              {"name": "Linear", "in_features": "auto", "out_features": "n_labels"}]
    batch_size = n_train - 1  # one image over every epoch: a batch of one would stop batch norm
    command, _ = validate_command(small_command(LABELS, epochs=2, batch_size=batch_size, model={"layers": layers}))
    result = train(command, open_store(store_url), TrainOptions(workdir / "runs", "bn", workers=0))
    assert [entry["images"] for entry in result.history] == [n_train, n_train]
