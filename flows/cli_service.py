"""serptrain request-label | promote: talking to the deployments that run as a service (prefect.yaml)."""

from __future__ import annotations

import argparse
import json
from typing import Any

LABEL_REQUESTED = "serptrain.label.requested"
SOURCES = ("auto", "store", "synthetic", "serpapi")


def label_request_payload(args: argparse.Namespace) -> dict[str, Any]:
    """Every key the on-new-label trigger templates, always present so a template never renders undefined."""
    return {"label": args.name, "queries": args.query or [args.name], "model_name": args.model or "",
            "source": args.source or "", "per_label": args.per_label or 0}


def require_server() -> str:
    """Events only reach a trigger on a running server; the ephemeral API would swallow them."""
    from prefect.settings import get_current_settings

    from models.errors import UserError

    url = get_current_settings().api.url
    if not url:
        raise UserError("no Prefect server: set PREFECT_API_URL (e.g. http://127.0.0.1:4200/api) "
                        "to the server the on-new-label deployment lives on")
    return url


def cmd_request_label(args: argparse.Namespace) -> int:
    from prefect.events import emit_event
    from prefect.events.worker import EventsWorker

    from models.errors import UserError

    url = require_server()
    payload = label_request_payload(args)
    resource = {"prefect.resource.id": f"serptrain.model.{payload['model_name'] or 'default'}",
                "prefect.resource.name": payload["model_name"] or "default"}
    event = emit_event(event=LABEL_REQUESTED, resource=resource, payload=payload)
    EventsWorker.drain_all(timeout=30)  # the worker sends in the background: wait before the process exits
    if event is None:
        raise UserError(f"the event could not be emitted to {url}")
    print(json.dumps({"event": LABEL_REQUESTED, "id": str(event.id), "payload": payload}))
    return 0


def cmd_promote(args: argparse.Namespace) -> int:
    from models.errors import UserError
    from store import open_store
    from tasks.promote import set_champion

    store = open_store(args.store)
    attempt = store.get_attempt(args.attempt_id)
    if attempt is None or attempt.get("status") != "evaluated":
        raise UserError(f"attempt {args.attempt_id!r}: only an evaluated attempt can become a champion")
    set_champion(store, args.attempt_id, reason="promoted by hand")
    print(f"{args.attempt_id} now serves {attempt['model_name']}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    request = sub.add_parser(
        "request-label", help="ask the service to add a label to a model (emits serptrain.label.requested)",
        description="Emit serptrain.label.requested to the Prefect server in PREFECT_API_URL; its on-new-label "
                    "deployment scrapes the queries, retrains the model with the label added, and promotes it.",
    )
    request.add_argument("name", help="the new label's name")
    request.add_argument("--query", "-q", action="append", metavar="Q", help="a search query (repeatable)")
    request.add_argument("--model", "-m", help="the model to extend (default: the only served model)")
    request.add_argument("--source", choices=SOURCES, help="override the model's acquire.source")
    request.add_argument("--per-label", type=int, help="override the model's acquire.per_label")
    request.set_defaults(func=cmd_request_label)

    promote = sub.add_parser("promote", help="make an evaluated attempt its model's champion, by hand")
    promote.add_argument("attempt_id")
    promote.add_argument("--store", help="store URL (default: SERPTRAIN_STORE)")
    promote.set_defaults(func=cmd_promote)
