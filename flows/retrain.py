"""Unattended training: the nightly retraining and the retraining a new label request starts.

Orchestration only. Both reuse the train-classifier flow as a subflow (so each retraining is an attempt with
its own run page, artifacts and bundle) and end in the promotion step, which replaces a model's champion only
when the new attempt scores better on the same frozen test split.
"""

from __future__ import annotations

import copy
from typing import Any

from prefect import flow, get_run_logger

from flows.pipeline import train_classifier
from models.command import Command
from models.validation import parse_command
from tasks.promote import list_champion_models, load_base_command, pick_target_model, promote_if_better

# A retry costs a fresh attempt; it is worth it for unattended runs, whose usual failures are transient
# (SerpApi or image hosts down beyond the tasks' own retries, a worker restarted mid-run).
UNATTENDED_RETRIES = 1


def serpapi_key_available() -> bool:
    from flows.acquire import resolve_api_key
    from models.errors import UserError

    try:
        resolve_api_key()
    except UserError:
        return False
    return True


def for_reacquisition(raw: dict[str, Any]) -> dict[str, Any]:
    """The same command, fetching fresh result pages: no_cache, and SerpApi rather than the store under auto."""
    command = copy.deepcopy(raw)
    acquire = command.setdefault("acquire", {})
    acquire["no_cache"] = True
    if acquire.get("source", "auto") == "auto" and serpapi_key_available():
        acquire["source"] = "serpapi"
    return command


def with_label(raw: dict[str, Any], label: str, queries: list[str], source: str = "",
               per_label: int = 0) -> dict[str, Any]:
    """The command with `label` added (or, when it is already there, its queries extended)."""
    command = copy.deepcopy(raw)
    labels = [{"name": item} if isinstance(item, str) else item for item in command.get("labels", [])]
    existing = next((item for item in labels if item["name"] == label), None)
    if existing is None:
        labels.append({"name": label, "queries": list(queries)})
    else:
        known = existing.setdefault("queries", [])
        known.extend(q for q in queries if q not in known)
    command["labels"] = labels
    acquire = command.setdefault("acquire", {})
    if source:
        acquire["source"] = source
    if per_label > 0:
        acquire["per_label"] = per_label
    return command


def retrain(command: Command, store_url: str | None, min_gain: float) -> dict[str, Any]:
    summary = train_classifier(command, store_url)
    decision = promote_if_better(summary["attempt_id"], store_url, min_gain)
    return {"attempt_id": summary["attempt_id"], "bundle_dir": summary["bundle_dir"],
            "test_accuracy": summary["test_accuracy"], "promotion": decision}


@flow(name="nightly-retrain", log_prints=True, persist_result=True, result_serializer="json",
      retries=UNATTENDED_RETRIES, retry_delay_seconds=600)
def nightly_retrain(model_names: list[str] | None = None, min_gain: float = 0.0,
                    store_url: str | None = None) -> dict[str, Any]:
    """Retrain each model (default: every model with a champion) on freshly acquired pages; promote winners.

    One model failing does not stop the others; the run fails at the end, naming which failed.
    """
    logger = get_run_logger()
    names = model_names or list_champion_models(store_url)
    if not names:
        logger.info("no model has a champion yet: nothing to retrain (promote one, or pass model_names)")
    results: dict[str, Any] = {}
    failures: dict[str, str] = {}
    for name in names:
        try:
            command = parse_command(for_reacquisition(load_base_command(name, store_url)))
            results[name] = retrain(command, store_url, min_gain)
        except Exception as exc:  # isolate models from each other; reported below
            logger.error("retraining %s failed: %s", name, exc)
            failures[name] = f"{type(exc).__name__}: {exc}"[:500]
    if failures:
        raise RuntimeError(f"retraining failed for {sorted(failures)}: {failures}")
    return {"models": results}


@flow(name="on-new-label", log_prints=True, persist_result=True, result_serializer="json",
      retries=UNATTENDED_RETRIES, retry_delay_seconds=300)
def on_new_label(label: str, queries: list[str] | None = None, model_name: str = "", source: str = "",
                 per_label: int = 0, max_accuracy_drop: float = 0.05,
                 store_url: str | None = None) -> dict[str, Any]:
    """Add `label` (fed by `queries`) to a model, acquire its images, retrain, and promote if not worse.

    The model's champion command is the base. On the labels both know, the new model may lose at most
    max_accuracy_drop of test accuracy to the champion: it now tells one class more apart.
    source / per_label, when given, override the base command's acquire settings (e.g. synthetic offline).
    """
    target = model_name or pick_target_model(store_url)
    raw = with_label(load_base_command(target, store_url), label, queries or [], source, per_label)
    result = retrain(parse_command(raw), store_url, -max_accuracy_drop)
    return {"model_name": target, "label": label, **result}
