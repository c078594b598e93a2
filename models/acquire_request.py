"""Acquisition requests: the older project's `add_to_db` and `multiple_query` dictionaries, accepted
unchanged, and their normalization (with a training command's labels) into one plan per label.

A plan says which queries feed a label, how many SerpApi pages it may spend, how many images it wants and
which Google Images options apply. The API key never enters a plan: it travels separately as a SecretStr.
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from models.command import Command
from models.errors import CommandError, Problem, did_you_mean, join_path

RESULTS_PER_PAGE = 100  # google_images returns up to 100 results per ijn page
PLACEHOLDER_KEYS = {"", "<api_key>", "your_api_key", "api_key"}


class AcquireSettings(BaseSettings):
    """Acquisition knobs (env prefix SERPTRAIN_ACQUIRE_); the defaults suit a laptop and serpapi.com."""

    model_config = SettingsConfigDict(env_prefix="SERPTRAIN_ACQUIRE_", extra="ignore")

    cache_expiration_s: float = Field(default=86_400, ge=0, description="Cached page lifetime; 0: no reuse.")
    search_retries: int = Field(default=4, ge=0, le=10, description="Retries on 429/5xx/timeout.")
    search_retry_delay_s: float = Field(default=2.0, ge=0, description="First retry delay; doubles.")
    search_timeout_s: float = Field(default=60.0, gt=0, description="Timeout of one SerpApi request.")
    page_concurrency: int = Field(default=4, ge=1, le=64, description="Result pages processed at once.")
    download_workers: int = Field(default=32, ge=1, le=512, description="Downloads at once per page.")
    per_host: int = Field(default=6, ge=1, le=256, description="Downloads at once from one host.")
    max_bytes: int = Field(default=20 * 2**20, gt=0, description="Largest image accepted, bytes.")
    download_timeout_s: float = Field(default=20.0, gt=0, description="Time cap of one download, all hops.")
    max_redirects: int = Field(default=5, ge=0, le=20, description="Redirects followed per download.")
    download_retries: int = Field(default=2, ge=0, le=5, description="Retries of a download on timeout/5xx.")
    download_retry_delay_s: float = Field(default=0.5, ge=0, description="First download retry delay.")
    min_side: int = Field(default=16, ge=1, description="Smallest accepted image side, pixels.")
    near_threshold: int = Field(default=4, ge=-1, le=64, description="Near-dup dHash bits; -1 off.")
    contact_sheet_images: int = Field(default=64, ge=1, le=400, description="Thumbnails per contact sheet.")
    user_agent: str = Field(
        default="serptrain/0.1 (+image classifier dataset builder)", min_length=1, max_length=300,
        description="User-Agent of image downloads; some hosts answer 403 to anything but a browser's.")


def load_acquire_settings() -> AcquireSettings:
    from models.settings import load_from_environment

    return load_from_environment(AcquireSettings)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class GoogleOptions(_Strict):
    google_domain: str = Field(default="google.com", pattern=r"^[a-z0-9.-]+$", description="Google domain.")
    hl: str | None = Field(default=None, max_length=10, description="Interface language, e.g. en.")
    gl: str | None = Field(default=None, max_length=10, description="Country, e.g. us.")
    safe: str | None = Field(default=None, pattern=r"^(active|off)$", description="SafeSearch.")
    chips: str = Field(default="", description="A chips value of google_images (a refinement).")
    desired_chips_name: str | None = Field(
        default=None, description="Pick chips by the name of a suggested search of the first result page."
    )
    height: int | None = Field(default=None, gt=0, le=20_000, description="Asked image height (imagesize:).")
    width: int | None = Field(default=None, gt=0, le=20_000, description="Asked image width (imagesize:).")
    no_cache: bool = Field(default=False, description="Ask SerpApi and our cache for fresh results.")
    api_key: SecretStr | None = Field(default=None, description="SerpApi key; prefer SERPAPI_API_KEY.")


class AddToDbRequest(GoogleOptions):
    """The older `add_to_db` request: one query, one label, from page `ijn` on."""

    q: str = Field(min_length=1, max_length=500, description="The query; also the label name.")
    ijn: int = Field(default=0, ge=0, le=100, description="First result page.")
    limit: int = Field(default=100, gt=0, le=100_000, description="Images wanted for the label.")
    number_of_pages: int | None = Field(default=None, gt=0, le=100, description="Page budget.")


class MultipleQueryRequest(GoogleOptions):
    """The older `multiple_query` request: each query is its own label."""

    queries: list[str] = Field(min_length=1, description="Queries; each becomes a label.")
    number_of_pages: int = Field(default=1, gt=0, le=100, description="Page budget per query.")
    limit: int = Field(default=100, gt=0, le=100_000, description="Images wanted per label.")


class LabelPlan(_Strict):
    """What to acquire for one label. Serializable, secret-free: it is a flow parameter."""

    label: str = Field(min_length=1)
    queries: list[str] = Field(min_length=1, description="SerpApi q values (imagesize suffix included).")
    pages: int = Field(gt=0, description="Page budget per query.")
    first_page: int = Field(default=0, ge=0, description="ijn of the first page.")
    target: int = Field(gt=0, description="Unique verified images wanted.")
    chips: str = ""
    desired_chips_name: str | None = None
    google_domain: str = "google.com"
    hl: str | None = None
    gl: str | None = None
    safe: str | None = None
    no_cache: bool = False


def imagesize_suffix(height: int | None, width: int | None) -> str:
    """The older project asked Google for a size through the query and named the label after it."""
    if height is None and width is None:
        return ""
    return f" imagesize:{height or width}x{width or height}"


def _common(options: GoogleOptions) -> dict[str, Any]:
    fields = ("chips", "desired_chips_name", "google_domain", "hl", "gl", "safe", "no_cache")
    return {name: getattr(options, name) for name in fields}


def plans_from_add_to_db(request: AddToDbRequest) -> list[LabelPlan]:
    name = request.q + imagesize_suffix(request.height, request.width)
    pages = request.number_of_pages or math.ceil(request.limit / RESULTS_PER_PAGE) + 1
    return [LabelPlan(label=name, queries=[name], pages=pages, first_page=request.ijn, target=request.limit,
                      **_common(request))]


def plans_from_multiple_query(request: MultipleQueryRequest) -> list[LabelPlan]:
    suffix = imagesize_suffix(request.height, request.width)
    names = list(dict.fromkeys(q.strip() + suffix for q in request.queries if q.strip()))
    return [LabelPlan(label=name, queries=[name], pages=request.number_of_pages, target=request.limit,
                      **_common(request)) for name in names]


def plans_from_command(command: Command) -> list[LabelPlan]:
    spec = command.acquire
    return [
        LabelPlan(label=label.name, queries=label.search_queries(), pages=label.pages,
                  target=label.limit or spec.per_label, no_cache=spec.no_cache)
        for label in command.labels
    ]


def _problems(exc: ValidationError, fields: list[str], prefix: str = "") -> list[Problem]:
    problems = []
    for err in exc.errors():
        path = join_path(prefix, *err["loc"]) if prefix else join_path(*err["loc"])
        message = err["msg"]
        if err["type"] == "extra_forbidden":
            message = f"unknown field{did_you_mean(str(err['loc'][-1]), fields)}"
        elif err["type"] != "missing" and "input" in err:
            message = f"{message}; found {err['input']!r}"[:300]
        problems.append(Problem(path, message))
    return problems


def request_kind(raw: Any) -> str:
    """add_to_db (has q), multiple_query (has queries) or command (has labels)."""
    if not isinstance(raw, dict):
        found = type(raw).__name__
        raise CommandError([Problem("", f"an acquisition request is a JSON/YAML object; found {found}")])
    kinds = [kind for key, kind in (("q", "add_to_db"), ("queries", "multiple_query"), ("labels", "command"))
             if key in raw]
    if len(kinds) != 1:
        raise CommandError([Problem("", "expected exactly one of q (add_to_db), queries (multiple_query) or "
                                        f"labels (a training command); found keys {sorted(raw)}")])
    return kinds[0]


def parse_acquire_request(raw: Any) -> tuple[list[LabelPlan], SecretStr | None]:
    """Any accepted request → (plans, api key from the request or None). Raises CommandError with paths."""
    kind = request_kind(raw)
    model: type[BaseModel] = {"add_to_db": AddToDbRequest, "multiple_query": MultipleQueryRequest,
                              "command": Command}[kind]
    try:
        request = model.model_validate(raw)
    except ValidationError as exc:
        raise CommandError(_problems(exc, list(model.model_fields))) from None
    if isinstance(request, AddToDbRequest):
        return plans_from_add_to_db(request), usable_key(request.api_key)
    if isinstance(request, MultipleQueryRequest):
        return plans_from_multiple_query(request), usable_key(request.api_key)
    return plans_from_command(request), None


def usable_key(key: SecretStr | None) -> SecretStr | None:
    """The seed files carry "<api_key>": a placeholder is no key."""
    if key is None or key.get_secret_value().strip().lower() in PLACEHOLDER_KEYS:
        return None
    return key


def validate_plans(raw: list[Any]) -> list[LabelPlan]:
    plans, problems = [], []
    for index, item in enumerate(raw):
        try:
            plans.append(item if isinstance(item, LabelPlan) else LabelPlan.model_validate(item))
        except ValidationError as exc:
            problems += _problems(exc, list(LabelPlan.model_fields), f"plans[{index}]")
    if problems:
        raise CommandError(problems)
    return plans
