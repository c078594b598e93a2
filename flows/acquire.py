"""The acquisition flow: label plans → SerpApi result pages (cached, retried) → verified, deduplicated images.

Pages are Prefect tasks run concurrently on a bounded ThreadPoolTaskRunner; each page task downloads its
images on its own bounded pool. Waves: when a label's usable images fall short of its target, further pages
are asked for, within the label's page budget, until the target is met or the results run out.
"""

from __future__ import annotations

import math
import os
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.futures import PrefectFuture
from prefect.task_runners import ThreadPoolTaskRunner
from pydantic import SecretStr

from flows.runners import with_acquisition_runner
from models.acquire_request import (
    RESULTS_PER_PAGE,
    AcquireSettings,
    LabelPlan,
    load_acquire_settings,
    plans_from_command,
    validate_plans,
)
from models.command import Command
from models.errors import UserError
from models.settings import load_settings
from store import open_store
from tasks.contact_sheet import make_contact_sheet
from tasks.download import download_page, options_from_settings, release_ingestors
from tasks.ingest import IngestReport, LabelReport
from tasks.search import chips_for, configured_fetch_page, search_params

SECRET_BLOCK = "serpapi-api-key"


@dataclass
class QueryState:
    query: str
    chips: str
    next_ijn: int
    budget: int
    first: dict[str, Any] | None = None  # a page already fetched while resolving chips
    exhausted: bool = False


@dataclass
class LabelState:
    plan: LabelPlan
    queries: list[QueryState]
    report: IngestReport = field(default_factory=IngestReport)
    keys: list[str] = field(default_factory=list)
    pages: int = 0
    have: int = 0
    have_gained: int = 0  # usable images this run added
    warnings: list[str] = field(default_factory=list)

    def active(self) -> list[QueryState]:
        return [q for q in self.queries if not q.exhausted and q.budget > 0]


def resolve_api_key(explicit: SecretStr | str | None = None) -> SecretStr:
    """The request's key, else SERPAPI_API_KEY, else the Prefect Secret block `serpapi-api-key`."""
    if isinstance(explicit, str):
        explicit = SecretStr(explicit)
    if explicit is not None and explicit.get_secret_value():
        return explicit
    if os.environ.get("SERPAPI_API_KEY"):
        return SecretStr(os.environ["SERPAPI_API_KEY"])
    try:
        from prefect.blocks.system import Secret

        value = str(Secret.load(SECRET_BLOCK).get() or "")
    except Exception:  # no block, or no Prefect API to ask: same answer for the user
        value = ""
    if not value:
        raise UserError(f"no SerpApi key: set SERPAPI_API_KEY, create a Prefect Secret block "
                        f"'{SECRET_BLOCK}', or put api_key in the request")
    return SecretStr(value)


def pages_wanted(state: LabelState, first_wave: bool) -> list[QueryState]:
    """Which queries get a page this wave: enough pages for the shortfall, spread over the queries."""
    need = state.plan.target - state.have
    active = state.active()
    if need <= 0 or not active:
        return []
    # Pages so far tell how many usable images a page yields here; before any, assume a full page.
    per_page = max(1.0, state.have_gained / state.pages) if state.pages else RESULTS_PER_PAGE
    count = math.ceil(need / per_page)
    if first_wave:
        count = max(count, len(active))  # every synonym contributes from the start
    chosen: list[QueryState] = []
    while len(chosen) < count and any(q.budget > 0 for q in active):
        for query in active:
            if query.budget > 0 and len(chosen) < count:
                query.budget -= 1
                chosen.append(query)
    return chosen


def submit_fetch(
    plan: LabelPlan, params: dict[str, Any], fetch_for: Any, ctx: dict[str, Any]
) -> PrefectFuture:
    """Submit one page; the run's first is awaited alone, so a bad key or an empty plan costs one request."""
    future = fetch_for(plan).submit(params, ctx["base_url"], ctx["api_key"], ctx["timeout_s"], plan.no_cache)
    if not ctx.get("probed"):
        future.result()
        ctx["probed"] = True
    return future


def resolve_chips(states: list[LabelState], fetch_for: Any, ctx: dict[str, Any]) -> None:
    """desired_chips_name → chips, from the suggested searches of each query's first page."""
    pending = []
    for state in states:
        plan = state.plan
        if not plan.desired_chips_name or plan.chips:
            continue
        for query in state.queries:
            params = search_params(plan, query.query, 0, "")
            pending.append((state, query, submit_fetch(plan, params, fetch_for, ctx)))
    for state, query, future in pending:
        page = future.result()
        chips = chips_for(page, state.plan.desired_chips_name or "")
        if chips:
            query.chips = chips
        else:
            names = [s.get("name") for s in page.get("suggested_searches") or []]
            wanted = state.plan.desired_chips_name
            state.warnings.append(f"{query.query!r}: no suggested search named {wanted!r} "
                                  f"(found {names}); searched without chips")
            if query.next_ijn == 0:
                query.first = page


def run_wave(states: list[LabelState], first_wave: bool, fetch_for: Any, ctx: dict[str, Any]) -> int:
    """Fetch and download one wave of pages; returns how many pages it asked for."""
    jobs: list[tuple[LabelState, QueryState, int, PrefectFuture | dict[str, Any]]] = []
    for state in states:
        for query in pages_wanted(state, first_wave):
            ijn = query.next_ijn
            query.next_ijn += 1
            if query.first is not None and ijn == 0:
                page: PrefectFuture | dict[str, Any] = query.first
            else:
                params = search_params(state.plan, query.query, ijn, query.chips)
                page = submit_fetch(state.plan, params, fetch_for, ctx)
            jobs.append((state, query, ijn, page))
    downloads = [
        download_page.submit(page, state.plan.label, query.query, ijn, ctx["store_url"], ctx["run_id"],
                             ctx["options"], ctx["near_threshold"], ctx["min_side"])
        for state, query, ijn, page in jobs
    ]
    for _, _, _, page in jobs:  # a bad key or an exhausted plan surfaces here, with its own message
        if isinstance(page, PrefectFuture):
            page.result()
    for (state, query, _, _), future in zip(jobs, downloads, strict=True):
        result = future.result()
        state.pages += 1
        state.keys += result["keys"]
        query.exhausted = query.exhausted or result["results"] == 0
        state.report.merge(IngestReport({state.plan.label: counts_from_dict(result["report"])}))
    return len(jobs)


def counts_from_dict(data: dict[str, Any]) -> LabelReport:
    """A page task's report (a dict, as tasks return plain data) back into counts that merge."""
    counts = LabelReport(**{k: v for k, v in data.items() if k != "rejected"})
    counts.rejected.update(data.get("rejected") or {})
    return counts


def label_summary(state: LabelState) -> dict[str, Any]:
    counts = state.report.label(state.plan.label).as_dict()
    return {**counts, "target": state.plan.target, "usable_in_store": state.have, "pages": state.pages,
            "queries": [q.query for q in state.queries], "chips": {q.query: q.chips for q in state.queries},
            "warnings": state.warnings}


def publish_artifacts(report: dict[str, Any]) -> None:
    rows = []
    for label, entry in report["labels"].items():
        rejected = ", ".join(f"{reason}: {n}" for reason, n in entry["rejected"].items()) or "-"
        rows.append({"label": label, "target": entry["target"], "usable in store": entry["usable_in_store"],
                     "pages": entry["pages"], "seen": entry["seen"], "downloaded": entry["downloaded"],
                     "stored": entry["stored"], "duplicates": entry["duplicates"],
                     "near duplicates": entry["near_duplicates"], "ambiguous": entry["ambiguous"],
                     "rejected": rejected})
    create_table_artifact(rows, key="acquire-report", description="Acquisition: per-label ingest report")
    lines = ["# Contact sheets", "", "What was scraped, per label (thumbnails of usable images).", ""]
    for label, path in report["contact_sheets"].items():
        lines += [f"## {label}", "", f"![{label}]({Path(path).as_uri()})", "", f"`{path}`", ""]
    create_markdown_artifact("\n".join(lines), key="acquire-contact-sheets",
                             description="Contact sheet PNG per label")


def run_waves(states: list[LabelState], fetch_for: Any, ctx: dict[str, Any], store: Any) -> None:
    """Waves of pages until every label meets its target, spends its budget or runs out of results."""
    logger = get_run_logger()
    initial = {state.plan.label: store.count(state.plan.label) for state in states}
    for state in states:
        state.have = initial[state.plan.label]
    wave, asked = 0, 1
    while asked:
        asked = run_wave(states, wave == 0, fetch_for, ctx)
        for state in states:
            state.have = store.count(state.plan.label)
            state.have_gained = state.have - initial[state.plan.label]
        logger.info("wave %d: %d pages; usable %s", wave, asked, {s.plan.label: s.have for s in states})
        wave += 1


@flow(name="acquire-images", log_prints=True,
      task_runner=ThreadPoolTaskRunner(max_workers=AcquireSettings.model_fields["page_concurrency"].default))
def acquire_images(plans: list[LabelPlan], store_url: str | None = None,
                   api_key: SecretStr | None = None) -> dict[str, Any]:
    """Acquire images for each label plan; returns the per-label ingest report."""
    plans = validate_plans(plans)
    settings, knobs = load_settings(), load_acquire_settings()
    cache_dir = str((settings.data_dir / "serpapi-cache").resolve())
    fetchers = {fresh: configured_fetch_page(knobs, cache_dir, fresh) for fresh in (False, True)}
    run_id = uuid.uuid4().hex[:12]
    ctx = {"base_url": settings.serpapi_url, "api_key": resolve_api_key(api_key), "store_url": store_url,
           "run_id": run_id, "options": asdict(options_from_settings(settings, knobs)),
           "timeout_s": knobs.search_timeout_s, "near_threshold": knobs.near_threshold,
           "min_side": knobs.min_side}
    states = [LabelState(p, [QueryState(q, p.chips, p.first_page, p.pages) for q in p.queries])
              for p in plans]
    try:
        resolve_chips(states, lambda plan: fetchers[plan.no_cache], ctx)
        run_waves(states, lambda plan: fetchers[plan.no_cache], ctx, open_store(store_url))
    finally:
        release_ingestors(run_id)
    sheets_dir = str(settings.data_dir / "contact-sheets")
    sheets = {s.plan.label: make_contact_sheet.submit(s.plan.label, s.keys, sheets_dir, store_url,
                                                      knobs.contact_sheet_images) for s in states}
    report = {"labels": {s.plan.label: label_summary(s) for s in states},
              "contact_sheets": {label: future.result() for label, future in sheets.items()}}
    publish_artifacts(report)
    return report


def acquire_labels(plans: list[LabelPlan] | list[dict[str, Any]], store_url: str | None = None,
                   api_key: SecretStr | str | None = None) -> dict[str, Any]:
    """Plain entry point for the pipeline and the CLI: checks the key before anything is spent."""
    checked = validate_plans(list(plans))
    key = resolve_api_key(api_key)
    # Threads by default, or the Dask cluster that SERPTRAIN_TASK_RUNNER=dask names (flows/runners.py).
    runner = with_acquisition_runner(acquire_images, max_workers=load_acquire_settings().page_concurrency)
    return runner(checked, store_url, key)


def acquire_for_command(command: Command, store_url: str | None = None) -> dict[str, Any]:
    """The training pipeline's acquisition step: the command's labels and queries, key from env/block."""
    return acquire_labels(plans_from_command(command), store_url)
