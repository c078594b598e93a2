"""Champion bookkeeping and the promotion decision.

Which attempt serves a model_name is a field on the attempt docs (`champion: true`), so it lives in the
store next to everything else and shows in `serptrain attempts`. A challenger replaces the champion only
when it scores better on the same frozen test images: the challenger's test split (splits are a pure function
of the image key, so it holds every test image the champion ever saw) restricted to the labels both know.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact

from models.bundle import read_spec
from models.errors import UserError
from store import ImageStore, open_store
from store.base import now_iso
from tasks.evaluation import evaluate_keys


def champion_of(store: ImageStore, model_name: str) -> dict[str, Any] | None:
    """The attempt serving model_name. If a crash left two flagged, the most recently promoted wins."""
    flagged = [doc for doc in store.find_attempts(model_name) if doc.get("champion")]
    return max(flagged, key=lambda doc: doc.get("champion_since", ""), default=None)


def champion_models(store: ImageStore) -> list[str]:
    return sorted({doc["model_name"] for doc in store.list_attempts() if doc.get("champion")})


def latest_evaluated(store: ImageStore, model_name: str) -> dict[str, Any] | None:
    evaluated = [doc for doc in store.find_attempts(model_name) if doc.get("status") == "evaluated"]
    return evaluated[-1] if evaluated else None


def base_attempt(store: ImageStore, model_name: str) -> dict[str, Any] | None:
    """What a retraining starts from: the champion, else the most recent evaluated attempt."""
    return champion_of(store, model_name) or latest_evaluated(store, model_name)


def set_champion(store: ImageStore, attempt_id: str, reason: str = "") -> dict[str, Any]:
    """Flag attempt_id as its model's champion, then unflag the others.

    Flag first, unflag second: a crash in between leaves two flagged (champion_of picks the newer), never none.
    """
    since = now_iso(precise=True)
    doc = store.update_attempt(attempt_id, champion=True, champion_since=since, champion_reason=reason)
    for other in store.find_attempts(doc["model_name"]):
        if other["id"] != attempt_id and other.get("champion"):
            store.update_attempt(other["id"], champion=False, champion_until=since, replaced_by=attempt_id)
    return doc


def read_test_items(bundle_dir: Path) -> tuple[list[str], list[tuple[str, int]]]:
    """The labels and the frozen test split recorded in a bundle's manifest."""
    manifest = json.loads((Path(bundle_dir) / "manifest.json").read_text())
    return manifest["labels"], [(key, index) for key, index in manifest["splits"]["test"]]


def shared_items(labels: list[str], items: list[tuple[str, int]], other_labels: list[str]) -> list[tuple[str, str]]:
    """(key, label name) of the test items whose label both models know, in a stable order."""
    known = set(other_labels)
    return sorted((key, labels[index]) for key, index in items if labels[index] in known)


def score(bundle_dir: Path, store: ImageStore, items: list[tuple[str, str]], labels: list[str]) -> float:
    """Accuracy of one bundle on (key, label name) items, indices mapped to that bundle's own label order."""
    if not items:
        return 0.0
    position = {name: index for index, name in enumerate(labels)}
    return evaluate_keys(bundle_dir, store, [(key, position[name]) for key, name in items], labels)["accuracy"]


def decide(challenger_accuracy: float, champion_accuracy: float | None, min_gain: float = 0.0,
           test_images: int = 0) -> tuple[bool, str]:
    """Promote when there is no champion, or the challenger beats it by more than min_gain.

    A tie keeps the champion: a model that serves should not flip on noise. A negative min_gain tolerates a
    small drop (used when a label was added on request and the old labels may get slightly harder).
    """
    if champion_accuracy is None:
        return True, "no champion yet"
    if test_images == 0:
        return False, "no test images in common: cannot compare, the champion stays"
    margin = challenger_accuracy - champion_accuracy
    if margin > min_gain:
        return True, f"challenger beats the champion by {margin:+.4f} (needed > {min_gain:+.4f})"
    return False, f"challenger does not beat the champion: {margin:+.4f} (needed > {min_gain:+.4f})"


def compare(challenger: dict[str, Any], champion: dict[str, Any] | None, store: ImageStore,
            min_gain: float) -> dict[str, Any]:
    """Both scores on the same items, and the decision. Pure apart from reading bundles and images."""
    labels, items = read_test_items(Path(challenger["bundle_dir"]))
    decision: dict[str, Any] = {
        "model_name": challenger["model_name"], "challenger": challenger["id"], "champion": None,
        "challenger_accuracy": None, "champion_accuracy": None, "test_images": 0, "labels_compared": labels,
        "min_gain": min_gain,
    }
    champion_bundle = Path(champion["bundle_dir"]) if champion and champion.get("bundle_dir") else None
    if champion_bundle is not None and (champion_bundle / "model.safetensors").exists():
        champion_labels = read_spec(champion_bundle).labels
        common = shared_items(labels, items, champion_labels)
        decision |= {
            "champion": champion["id"], "test_images": len(common),
            "labels_compared": [name for name in labels if name in set(champion_labels)],
            "champion_accuracy": score(champion_bundle, store, common, champion_labels),
            "challenger_accuracy": score(Path(challenger["bundle_dir"]), store, common, labels),
        }
    else:
        every = shared_items(labels, items, labels)
        decision |= {"test_images": len(every),
                     "challenger_accuracy": score(Path(challenger["bundle_dir"]), store, every, labels)}
    promoted, reason = decide(decision["challenger_accuracy"], decision["champion_accuracy"], min_gain,
                              decision["test_images"])
    if champion is not None and decision["champion"] is None:
        reason = f"the champion {champion['id']}'s bundle is gone"
    return decision | {"promoted": promoted, "reason": reason}


def decision_markdown(decision: dict[str, Any]) -> str:
    def fmt(value: float | None) -> str:
        return "—" if value is None else f"{value:.4f}"

    verdict = "promoted" if decision["promoted"] else "not promoted"
    return "\n".join([
        f"# {decision['model_name']}: challenger `{decision['challenger']}` {verdict}",
        "",
        f"{decision['reason']}.",
        "",
        "| role | attempt | test accuracy |",
        "|---|---|---:|",
        f"| champion | `{decision['champion'] or 'none'}` | {fmt(decision['champion_accuracy'])} |",
        f"| challenger | `{decision['challenger']}` | {fmt(decision['challenger_accuracy'])} |",
        "",
        f"Both scored on the same {decision['test_images']} frozen test images of labels "
        f"{', '.join(decision['labels_compared'])}.",
    ])


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-")[:60] or "model"


@task(name="promote-if-better")
def promote_if_better(challenger_id: str, store_url: str | None = None, min_gain: float = 0.0) -> dict[str, Any]:
    """Score challenger and champion on the same frozen test split; make the challenger champion if it wins."""
    store = open_store(store_url)
    challenger = store.get_attempt(challenger_id)
    if challenger is None or challenger.get("status") != "evaluated":
        raise ValueError(f"attempt {challenger_id!r} is not an evaluated attempt")
    champion = champion_of(store, challenger["model_name"])
    if champion is not None and champion["id"] == challenger_id:
        return {"model_name": challenger["model_name"], "challenger": challenger_id, "promoted": False,
                "reason": "already the champion"}
    decision = compare(challenger, champion, store, min_gain)
    if decision["promoted"]:
        set_champion(store, challenger_id, decision["reason"])
    store.update_attempt(challenger_id, promotion=decision)
    get_run_logger().info("%s: %s", challenger["model_name"], decision["reason"])
    create_markdown_artifact(decision_markdown(decision), key=f"{_slug(challenger['model_name'])}-promotion",
                             description="Promotion decision: champion vs challenger on the frozen test split")
    return decision


@task(name="load-base-command")
def load_base_command(model_name: str, store_url: str | None = None) -> dict[str, Any]:
    """The command a retraining of model_name starts from (the champion's, else the latest evaluated one's)."""
    base = base_attempt(open_store(store_url), model_name)
    if base is None or not base.get("command"):
        raise UserError(f"model {model_name!r} has no evaluated attempt to start from: "
                        "train it once first (`serptrain run COMMAND` or the train-classifier deployment)")
    get_run_logger().info("starting from attempt %s (%s)", base["id"], "champion" if base.get("champion") else
                          "latest evaluated")
    return base["command"]


@task(name="list-champion-models")
def list_champion_models(store_url: str | None = None) -> list[str]:
    return champion_models(open_store(store_url))


@task(name="pick-target-model")
def pick_target_model(store_url: str | None = None) -> str:
    """The model a label request without --model extends: only unambiguous when one model is served."""
    served = champion_models(open_store(store_url))
    if len(served) == 1:
        return served[0]
    raise UserError(f"name the model to extend (--model): the store serves {served or 'no model'}")
