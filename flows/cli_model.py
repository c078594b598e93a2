"""serptrain evaluate | predict: using a trained bundle (the older project's /test, and single predictions)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from flows.commandfile import read_command_file
from flows.tables import text_table
from models.errors import UserError


def latest_bundle(runs_dir: Path, model_name: str) -> Path:
    """The most recently written complete bundle of a model under the runs directory."""
    weights = (runs_dir / model_name).glob("*/model.safetensors")
    bundles = [p.parent for p in weights if (p.parent / "model.json").exists()]
    if not bundles:
        raise UserError(f"no trained bundle of model {model_name!r} under {runs_dir} (train it first)")
    return max(bundles, key=lambda p: (p / "model.safetensors").stat().st_mtime)


def evaluate_request(target: str, runs_dir: Path) -> tuple[Path, dict[str, Any]]:
    """A bundle directory, or a /test request file naming the model (its latest bundle) and what to test on."""
    path = Path(target)
    if path.is_dir():
        if not (path / "model.json").exists():
            raise UserError(f"{path}: not a model bundle (no model.json)")
        return path, {}
    raw = read_command_file(path)
    if not isinstance(raw, dict) or not raw.get("model_name"):
        raise UserError(f"{path}: expected a bundle directory or a request with model_name (and label_names, "
                        "ids, limit)")
    request = {"labels": raw.get("label_names") or raw.get("labels") or None, "ids": raw.get("ids") or None,
               "limit": raw.get("limit") or None}
    if request["labels"]:
        request["labels"] = [x["name"] if isinstance(x, dict) else x for x in request["labels"]]
    return latest_bundle(runs_dir, raw["model_name"]), request


def _report_text(bundle: Path, test: dict[str, Any]) -> str:
    k = test["top_k"]
    rows = [f"{bundle}: accuracy {test['accuracy']:.3f}, top-{k} {test[f'top{k}_accuracy']:.3f}, "
            f"macro F1 {test['macro_f1']:.3f} on {test['images']} images"]
    rows += text_table(["label", "prec", "recall", "f1", "n"],
                       [(label, m["precision"], m["recall"], m["f1"], m["support"])
                        for label, m in test["per_class"].items()], indent="  ")
    return "\n".join(rows)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from models.bundle import read_spec
    from models.settings import load_settings
    from store import open_store
    from tasks.evaluate import evaluate_bundle, select_items

    bundle, request = evaluate_request(args.target, load_settings().runs_dir)
    spec = read_spec(bundle)
    store = open_store(args.store)
    split = None if args.split == "all" else args.split
    items = select_items(store, spec.labels, request.get("labels"), args.ids or request.get("ids"),
                         args.limit or request.get("limit"), split, args.seed)
    if not items:
        raise UserError(f"no images of {request.get('labels') or spec.labels} in the {args.split} split of the store")
    metrics = evaluate_bundle(bundle, store, items, write=False)
    out = {"bundle": str(bundle), **metrics["test"], "top_losses": metrics["top_losses"]}
    print(json.dumps(out, indent=2) if args.json else _report_text(bundle, metrics["test"]))
    return 0


def read_image_source(source: str) -> bytes:
    if source.startswith(("http://", "https://")):
        from dataclasses import replace

        from models.acquire_request import load_acquire_settings
        from models.settings import load_settings
        from tasks.download import Downloader, DownloadRejected, options_from_settings

        options = replace(options_from_settings(load_settings(), load_acquire_settings()), workers=1, retries=1)
        try:
            with Downloader(options) as downloader:
                return downloader.fetch(source)
        except DownloadRejected as exc:
            raise UserError(f"{source}: download failed ({exc.reason})") from None
    path = Path(source)
    if not path.is_file():
        raise UserError(f"{source}: no such file (give an image file or an http(s) URL)")
    return path.read_bytes()


def predict_sources(bundle: Path, sources: list[str], top_k: int) -> list[dict[str, Any]]:
    from models.bundle import load_bundle
    from tasks.evaluation import predict_images
    from tasks.training.data import decode_image

    module, spec = load_bundle(bundle)
    preprocess = spec.preprocess()
    results = []
    for source in sources:
        try:
            image = decode_image(read_image_source(source))
        except OSError as exc:
            raise UserError(f"{source}: not a readable image ({exc})") from None
        probs = predict_images(module, preprocess, [image])[0]
        top = probs.topk(min(top_k, len(spec.labels)))
        results.append({"image": source, "top": [{"label": spec.labels[i], "probability": round(p, 6)}
                                                 for p, i in zip(top.values.tolist(), top.indices.tolist(),
                                                                 strict=True)]})
    return results


def cmd_predict(args: argparse.Namespace) -> int:
    bundle = Path(args.bundle)
    if not (bundle / "model.json").exists():
        raise UserError(f"{bundle}: not a model bundle (no model.json)")
    results = predict_sources(bundle, args.images, args.top_k)
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    for result in results:
        guesses = ", ".join(f"{t['label']} {t['probability']:.3f}" for t in result["top"])
        print(f"{result['image']}: {guesses}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    evaluate = sub.add_parser("evaluate", help="measure a trained bundle on store images (the older /test)")
    evaluate.add_argument("target", metavar="BUNDLE_OR_FILE",
                          help="a bundle directory, or a /test request file (model_name, label_names, ids, limit)")
    evaluate.add_argument("--limit", type=int, default=None, help="at most N images, drawn at random")
    evaluate.add_argument("--ids", nargs="+", default=None, metavar="ID", help="only these image keys")
    evaluate.add_argument("--split", choices=["test", "val", "train", "all"], default="test",
                          help="which split to draw images from (default: test, never trained on)")
    evaluate.add_argument("--seed", type=int, default=0, help="seed of the random draw")
    evaluate.add_argument("--store", default=None, help="store URL (default: $SERPTRAIN_STORE)")
    evaluate.add_argument("--json", action="store_true", help="print the metrics as JSON")
    evaluate.set_defaults(func=cmd_evaluate)
    predict = sub.add_parser("predict", help="classify image files or URLs with a trained bundle")
    predict.add_argument("bundle", metavar="BUNDLE")
    predict.add_argument("images", nargs="+", metavar="IMAGE_OR_URL")
    predict.add_argument("--top-k", type=int, default=3, help="how many labels to show per image")
    predict.add_argument("--json", action="store_true", help="print the predictions as JSON")
    predict.set_defaults(func=cmd_predict)
