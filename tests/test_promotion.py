"""Promotion: a challenger replaces the champion only when it scores better on the same frozen test split."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import pytest
from PIL import Image
from torch import nn

from flows.pipeline import train_classifier
from flows.retrain import for_reacquisition, with_label
from models.bundle import load_bundle, save_bundle
from models.validation import validate_command
from store import open_store
from tasks.ingest import Ingestor, folder_images, ingest_paths
from tasks.promote import champion_of, decide, promote_if_better, set_champion
from tests.helpers import small_command

# --- the decision alone -------------------------------------------------------------------------------------


def test_first_challenger_is_promoted_when_there_is_no_champion() -> None:
    assert decide(0.4, None)[0] is True


def test_worse_or_equal_challenger_is_not_promoted() -> None:
    assert decide(0.70, 0.80, test_images=50)[0] is False
    assert decide(0.80, 0.80, test_images=50)[0] is False  # a tie keeps the champion


def test_better_challenger_is_promoted_only_past_the_margin() -> None:
    assert decide(0.85, 0.80, test_images=50)[0] is True
    assert decide(0.85, 0.80, min_gain=0.10, test_images=50)[0] is False


def test_negative_margin_tolerates_a_small_drop() -> None:
    assert decide(0.78, 0.80, min_gain=-0.05, test_images=50)[0] is True
    assert decide(0.70, 0.80, min_gain=-0.05, test_images=50)[0] is False


def test_no_common_test_images_keeps_the_champion() -> None:
    promoted, reason = decide(1.0, 0.0, test_images=0)
    assert promoted is False and "no test images" in reason


# --- champion bookkeeping -----------------------------------------------------------------------------------


def test_one_champion_per_model(workdir: Path, store_url: str) -> None:
    store = open_store(store_url)
    first = store.create_attempt({"model_name": "m", "status": "evaluated"})
    second = store.create_attempt({"model_name": "m", "status": "evaluated"})
    other = store.create_attempt({"model_name": "other", "status": "evaluated"})
    set_champion(store, first)
    set_champion(store, other)
    set_champion(store, second)
    assert champion_of(store, "m")["id"] == second
    assert store.get_attempt(first)["champion"] is False and store.get_attempt(first)["replaced_by"] == second
    assert champion_of(store, "other")["id"] == other


# --- command derivation for the unattended flows ------------------------------------------------------------


def test_label_request_adds_the_label_and_keeps_the_rest() -> None:
    base = small_command(["circle", {"name": "square", "queries": ["square shape"]}])
    added = with_label(base, "star", ["star shape"], source="synthetic", per_label=20)
    assert [label["name"] for label in added["labels"]] == ["circle", "square", "star"]
    assert added["labels"][2]["queries"] == ["star shape"]
    assert added["acquire"] == {"source": "synthetic", "per_label": 20}
    merged = with_label(base, "square", ["square shape", "box"])
    assert merged["labels"][1]["queries"] == ["square shape", "box"]
    assert base["labels"][0] == "circle"  # the base command is not modified


def test_nightly_reacquisition_bypasses_the_page_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SERPAPI_API_KEY", "test-key")
    fresh = for_reacquisition({"model_name": "m", "labels": ["a", "b"]})
    assert fresh["acquire"] == {"no_cache": True, "source": "serpapi"}
    assert for_reacquisition({"acquire": {"source": "synthetic"}})["acquire"]["source"] == "synthetic"


# --- real bundles scored on the same split ------------------------------------------------------------------


def write_tinted_noise(root: Path, label: str, channel: int, count: int) -> None:
    """Noise images dominated by one colour channel: easy to learn, and each one perceptually distinct."""
    rng = random.Random(f"{label}:{channel}")
    (root / label).mkdir(parents=True, exist_ok=True)
    for n in range(count):
        pixels = []
        for _ in range(24 * 24):
            rgb = [rng.randrange(0, 90) for _ in range(3)]
            rgb[channel] = rng.randrange(160, 256)
            pixels.append(tuple(rgb))
        image = Image.new("RGB", (24, 24))
        image.putdata(pixels)
        image.save(root / label / f"{n:03d}.png")


def inverted_copy(store_url: str, attempt_id: str, runs: Path) -> str:
    """A second attempt whose bundle is the first one with its output layer negated: it ranks classes upside down."""
    store = open_store(store_url)
    source = store.get_attempt(attempt_id)
    bad_id = store.create_attempt({"model_name": source["model_name"], "status": "evaluated",
                                   "command": source["command"]})
    bad_dir = runs / source["model_name"] / bad_id
    shutil.copytree(source["bundle_dir"], bad_dir)
    module, spec = load_bundle(bad_dir)
    last = [m for m in module.modules() if isinstance(m, nn.Linear)][-1]
    last.weight.data.neg_()
    last.bias.data.neg_()
    spec.attempt_id = bad_id
    save_bundle(bad_dir, module, spec)
    store.update_attempt(bad_id, bundle_dir=str(bad_dir))
    return bad_id


def test_worse_challenger_is_not_promoted_and_better_one_is(prefect_harness, workdir: Path, store_url: str) -> None:
    write_tinted_noise(workdir / "images", "red", 0, 60)
    write_tinted_noise(workdir / "images", "blue", 2, 60)
    ingest_paths(Ingestor(open_store(store_url)), list(folder_images(workdir / "images")))
    command, _ = validate_command(small_command(["red", "blue"], epochs=3))
    good = train_classifier(command)["attempt_id"]
    bad = inverted_copy(store_url, good, workdir / "runs")
    store = open_store(store_url)

    set_champion(store, good)
    kept = promote_if_better(bad, store_url)
    assert kept["promoted"] is False and champion_of(store, "tiny")["id"] == good
    assert kept["challenger_accuracy"] < kept["champion_accuracy"] and kept["test_images"] > 0

    set_champion(store, bad)
    replaced = promote_if_better(good, store_url)
    assert replaced["promoted"] is True and champion_of(store, "tiny")["id"] == good
    assert replaced["test_images"] == kept["test_images"]  # the same frozen split both times
    assert replaced["challenger_accuracy"] == kept["champion_accuracy"]
    assert store.get_attempt(bad)["champion"] is False
    assert store.get_attempt(good)["promotion"]["champion"] == bad


def test_promote_command_makes_an_evaluated_attempt_champion(workdir: Path, store_url: str) -> None:
    from flows.cli import main

    store = open_store(store_url)
    evaluated = store.create_attempt({"model_name": "m", "status": "evaluated"})
    failed = store.create_attempt({"model_name": "m", "status": "failed"})
    assert main(["promote", failed]) == 2 and champion_of(store, "m") is None
    assert main(["promote", evaluated]) == 0 and champion_of(store, "m")["id"] == evaluated


def test_nightly_retrains_served_models_and_records_the_decision(prefect_harness, workdir: Path,
                                                                 store_url: str) -> None:
    from flows.retrain import nightly_retrain

    nightly = nightly_retrain.with_options(retries=0)  # the deployed flow retries after minutes
    assert nightly() == {"models": {}}  # nothing served yet: nothing to do
    command, _ = validate_command(small_command(
        ["circle", "square"], epochs=1, acquire={"source": "synthetic", "per_label": 30, "image_size": 32}))
    first = train_classifier(command)["attempt_id"]
    store = open_store(store_url)
    set_champion(store, first)

    result = nightly()["models"]["tiny"]
    challenger = store.get_attempt(result["attempt_id"])
    assert challenger["status"] == "evaluated" and challenger["command"]["acquire"]["no_cache"] is True
    decision = challenger["promotion"]
    assert decision["champion"] == first and decision["test_images"] > 0
    assert champion_of(store, "tiny")["id"] == (challenger["id"] if decision["promoted"] else first)

    failed = nightly(model_names=["never-trained"], return_state=True)
    assert failed.is_failed() and "never-trained" in failed.message
