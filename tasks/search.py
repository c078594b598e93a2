"""One SerpApi google_images result page per task, through the official `serpapi` client.

The page is cached on the search parameters without the key (INPUTS - api_key), persisted under the data dir,
so the same acquisition twice in a day spends no credits. 429/5xx/timeouts are retried with exponential
backoff and jitter; a bad key (401) or an exhausted plan fails at once, saying which.
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import serpapi
from prefect import Task, task
from prefect.cache_policies import INPUTS
from prefect.client.schemas.objects import TaskRun
from prefect.concurrency.sync import rate_limit
from prefect.context import TaskRunContext
from prefect.states import State
from prefect.tasks import exponential_backoff
from pydantic import SecretStr

from models.acquire_request import AcquireSettings, LabelPlan
from models.errors import UserError
from models.settings import load_settings

ENGINE = "google_images"
RESULT_FIELDS = ("position", "thumbnail", "title", "link", "source", "original", "original_width",
                 "original_height")
NO_RESULTS = re.compile(r"hasn't returned any results|no results", re.I)
PLAN_EXHAUSTED = re.compile(r"run out of searches|searches for the month|exhausted|upgrade", re.I)


class SerpApiAuthError(UserError):
    """401: the key is wrong or revoked. Retrying cannot help."""


class SerpApiPlanExhausted(UserError):
    """The account has no searches left this month. Retrying cannot help."""


class SerpApiRequestError(UserError):
    """SerpApi refused the parameters (4xx other than 401/429)."""


class SerpApiTransientError(RuntimeError):
    """429 throughput limit, 5xx, timeout, connection error: worth a retry."""


def search_params(plan: LabelPlan, query: str, ijn: int, chips: str) -> dict[str, Any]:
    """The parameters sent to SerpApi, minus api_key and no_cache (which do not change the results)."""
    params: dict[str, Any] = {"engine": ENGINE, "q": query, "ijn": ijn, "google_domain": plan.google_domain}
    for name in ("hl", "gl", "safe"):
        if getattr(plan, name):
            params[name] = getattr(plan, name)
    if chips:
        params["chips"] = chips
    return params


def _classify(exc: Exception) -> Exception:
    """serpapi/requests exceptions carry the request URL, key included: rebuild them without it."""
    status = getattr(exc, "status_code", None)
    detail = str(getattr(exc, "error", "") or "")[:200]
    if isinstance(exc, serpapi.TimeoutError):
        return SerpApiTransientError("SerpApi timed out")
    if isinstance(exc, serpapi.HTTPConnectionError) or status in (None, -1):
        return SerpApiTransientError(f"SerpApi unreachable ({type(exc).__name__})")
    if status == 401:
        return SerpApiAuthError(f"SerpApi rejected the API key (HTTP 401): {detail or 'invalid key'}")
    if status == 429 and PLAN_EXHAUSTED.search(detail):
        return SerpApiPlanExhausted(f"SerpApi plan exhausted (HTTP 429): {detail}")
    if status == 429 or status >= 500:
        return SerpApiTransientError(f"SerpApi HTTP {status}: {detail or 'retry later'}")
    return SerpApiRequestError(f"SerpApi refused the request (HTTP {status}): {detail}")


def _trim(data: dict[str, Any]) -> dict[str, Any]:
    """Keep what acquisition uses: smaller cache files, nothing echoed back that we did not need."""
    images = [{k: item.get(k) for k in RESULT_FIELDS} for item in data.get("images_results") or []]
    suggested = [{"name": s.get("name"), "chips": s.get("chips")}
                 for s in data.get("suggested_searches") or []]
    return {"search_id": (data.get("search_metadata") or {}).get("id"), "images": images,
            "suggested_searches": suggested}


def call_serpapi(params: dict[str, Any], base_url: str, api_key: SecretStr | None, timeout_s: float,
                 fresh: bool = False) -> dict[str, Any]:
    """One request through the official client; its base URL points at SERPTRAIN_SERPAPI_URL."""
    client = serpapi.Client(api_key=api_key.get_secret_value() if api_key else None, timeout=timeout_s)
    client.BASE_DOMAIN = base_url.rstrip("/")
    query = dict(params, no_cache="true") if fresh else dict(params)
    # One global limit across runs and workers keeps us within the plan's rate; without the limit
    # (`prefect gcl create serpapi ...`) this only warns.
    limit = load_settings().serpapi_rate_limit
    # Opt-in: each call asks the Prefect API for a slot, which costs a round trip (seconds on the ephemeral
    # SQLite API); plain calls (tests of .fn, scripts) have no API to ask.
    if limit and TaskRunContext.get() is not None:
        rate_limit(limit, strict=False)
    try:
        data = client.search(query).as_dict()
    except serpapi.SerpApiError as exc:
        raise _classify(exc) from None
    finally:
        client.session.close()
    error = str(data.get("error") or "")
    if error and not NO_RESULTS.search(error):
        raise SerpApiRequestError(f"SerpApi: {error[:200]}")
    return _trim(data)


def retry_transient(task: Task, task_run: TaskRun, state: State) -> bool:
    """Only 429/5xx/timeouts are retried; a bad key or an exhausted plan fails the first time."""
    try:
        state.result(raise_on_failure=True)
    except SerpApiTransientError:
        return True
    except Exception:
        return False
    return False


@task(
    name="fetch-page",
    task_run_name="fetch-page {params[q]} ijn={params[ijn]}",
    cache_policy=INPUTS - "api_key" - "timeout_s" - "fresh",
    cache_expiration=timedelta(days=1),
    persist_result=True,
    result_serializer="json",  # the page is plain JSON: never unpickle what came from outside
    retries=4,
    retry_delay_seconds=exponential_backoff(backoff_factor=2),
    retry_jitter_factor=0.5,
    retry_condition_fn=retry_transient,
)
def fetch_page(params: dict[str, Any], base_url: str, api_key: SecretStr | None = None,
               timeout_s: float = 60.0, fresh: bool = False) -> dict[str, Any]:
    """One result page: {search_id, images: [...], suggested_searches: [...]}; cached without the key."""
    return call_serpapi(params, base_url, api_key, timeout_s, fresh)


def configured_fetch_page(settings: AcquireSettings, cache_dir: str, fresh: bool) -> Task:
    """fetch_page with this run's retry, cache and storage settings (set at run time, not import time)."""
    return fetch_page.with_options(
        retries=settings.search_retries,
        retry_delay_seconds=exponential_backoff(backoff_factor=settings.search_retry_delay_s),
        cache_expiration=timedelta(seconds=settings.cache_expiration_s or 1),
        result_storage=Path(cache_dir),
        refresh_cache=fresh or settings.cache_expiration_s == 0,  # 0: never reuse a page
    )


def chips_for(page: dict[str, Any], desired_name: str) -> str | None:
    """The chips of the suggested search named desired_name (case-insensitive), as the older project chose."""
    wanted = desired_name.strip().lower()
    for suggestion in page.get("suggested_searches") or []:
        if str(suggestion.get("name") or "").strip().lower() == wanted and suggestion.get("chips"):
            return str(suggestion["chips"])
    return None
