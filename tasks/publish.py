"""Publishing step: Prefect artifacts a person looks at — summary, per-class table, link to the bundle."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import task
from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-")[:60] or "model"


def _quality_lines(test: dict[str, Any], training: dict[str, Any]) -> list[str]:
    k = test.get("top_k")
    lines = []
    if k:
        lines.append(f"Top-{k} accuracy {test[f'top{k}_accuracy']:.3f}, macro F1 {test['macro_f1']:.3f}.")
    if training.get("resumed_from_epoch"):
        lines.append(f"Resumed from the checkpoint of epoch {training['resumed_from_epoch']}.")
    if training.get("best_epoch"):
        stop = " (stopped early)" if training.get("stopped_early") else ""
        lines.append(f"Weights of the best validation epoch, {training['best_epoch']}{stop}.")
    if training.get("precision"):
        lines.append(f"Precision {training['precision']}; decoded-image cache: {training.get('cache', {})}.")
    return [*lines, ""] if lines else []


def summary_markdown(model_name: str, attempt_id: str, train: dict[str, Any], metrics: dict[str, Any]) -> str:
    test = metrics["test"]
    lines = [
        f"# {model_name} — attempt `{attempt_id}`",
        "",
        f"**Test accuracy: {test['accuracy']:.3f}** on {test['images']} held-out images; "
        f"{len(train['history'])} epochs on {train['device']} in {train['seconds']:.1f}s.",
        "",
        *_quality_lines(test, train.get("training", {})),
        "| label | train | val | test |",
        "|---|---:|---:|---:|",
    ]
    for label, counts in train["counts"].items():
        lines.append(f"| {label} | {counts['train']} | {counts['val']} | {counts['test']} |")
    bundle = Path(train["bundle_dir"]).resolve()
    lines += ["", f"Bundle: `{bundle}`"]
    pictures = sorted(bundle.glob("*.png"))
    if pictures:
        lines += ["", "Pictures:"] + [f"- [{p.name}]({p.as_uri()})" for p in pictures]
    wrong = metrics.get("top_losses", [])[:5]
    if wrong:
        lines += ["", "Most confidently wrong test images (see top_losses.png):", "",
                  "| image | label | predicted | confidence |", "|---|---|---|---:|"]
        lines += [f"| `{w['key'][:12]}` | {w['label']} | {w['predicted']} | {w['confidence']:.2f} |" for w in wrong]
    return "\n".join(lines)


def per_class_rows(metrics: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {"label": label, "precision": round(m["precision"], 4), "recall": round(m["recall"], 4),
         "f1": round(m["f1"], 4), "support": m["support"]}
        for label, m in metrics["test"]["per_class"].items()
    ]


@task(name="publish-artifacts")
def publish(model_name: str, attempt_id: str, train: dict[str, Any], metrics: dict[str, Any]) -> None:
    key = _slug(model_name)
    create_markdown_artifact(summary_markdown(model_name, attempt_id, train, metrics), key=f"{key}-summary",
                             description=f"Training summary of {model_name}")
    create_table_artifact(per_class_rows(metrics), key=f"{key}-per-class",
                          description="Per-class precision, recall and F1 on the test split")
    create_link_artifact(Path(train["bundle_dir"]).resolve().as_uri(), link_text="model bundle",
                         key=f"{key}-bundle", description="model.safetensors + model.json + metrics.json")
