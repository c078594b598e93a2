"""Publishing step: Prefect artifacts a person looks at — summary, per-class table, link to the bundle."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import task
from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-")[:60] or "model"


def summary_markdown(model_name: str, attempt_id: str, train: dict[str, Any], metrics: dict[str, Any]) -> str:
    test = metrics["test"]
    lines = [
        f"# {model_name} — attempt `{attempt_id}`",
        "",
        f"**Test accuracy: {test['accuracy']:.3f}** on {test['images']} held-out images; "
        f"{len(train['history'])} epochs on {train['device']} in {train['seconds']:.1f}s.",
        "",
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
