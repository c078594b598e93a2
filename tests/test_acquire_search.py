"""SerpApi pages through the official client against a local fake: parameters, errors told apart, no key
in any message."""

from __future__ import annotations

import pytest
from prefect.states import Failed
from pydantic import SecretStr

from models.acquire_request import LabelPlan
from tasks.search import (
    SerpApiAuthError,
    SerpApiPlanExhausted,
    SerpApiRequestError,
    SerpApiTransientError,
    call_serpapi,
    chips_for,
    fetch_page,
    retry_transient,
    search_params,
)
from tests.fixtures.fake_serpapi import FakeSerpApi

KEY = SecretStr("test-key")


@pytest.fixture
def api():
    with FakeSerpApi() as server:
        server.add_query("coffee", [f"http://img.example/{i}.png" for i in range(150)])
        server.add_query("coffee", ["http://img.example/phone.png"], chips="q:coffee,g_1:phone")
        server.add_suggestion("coffee", "Phone", "q:coffee,g_1:phone")
        yield server


def plan(**overrides) -> LabelPlan:
    return LabelPlan(**({"label": "coffee", "queries": ["coffee"], "pages": 2, "target": 10} | overrides))


def test_search_params_carry_the_google_options_but_never_the_key():
    options = plan(hl="en", gl="us", safe="active", google_domain="google.fr")
    params = search_params(options, "coffee", 3, "c1")
    assert params == {"engine": "google_images", "q": "coffee", "ijn": 3, "google_domain": "google.fr",
                      "hl": "en", "gl": "us", "safe": "active", "chips": "c1"}


def test_pages_come_back_trimmed_with_search_id(api):
    first = fetch_page.fn(search_params(plan(), "coffee", 0, ""), api.url, KEY, 5.0)
    second = fetch_page.fn(search_params(plan(), "coffee", 1, ""), api.url, KEY, 5.0)
    assert len(first["images"]) == 100 and len(second["images"]) == 50
    assert set(first["images"][0]) == {"position", "thumbnail", "title", "link", "source", "original",
                                       "original_width", "original_height"}
    assert second["images"][0]["position"] == 101 and first["search_id"]
    assert api.requests[0]["q"] == "coffee" and "api_key" not in api.requests[0]


def test_past_the_last_page_is_an_empty_page_not_an_error(api):
    page = call_serpapi(search_params(plan(), "coffee", 5, ""), api.url, KEY, 5.0)
    assert page["images"] == []


def test_chips_are_chosen_by_suggested_search_name(api):
    page = call_serpapi(search_params(plan(), "coffee", 0, ""), api.url, KEY, 5.0)
    assert chips_for(page, "phone") == "q:coffee,g_1:phone"
    assert chips_for(page, "laptop") is None
    chipped = call_serpapi(search_params(plan(), "coffee", 0, "q:coffee,g_1:phone"), api.url, KEY, 5.0)
    assert [i["original"] for i in chipped["images"]] == ["http://img.example/phone.png"]


def test_fresh_asks_serpapi_for_no_cache(api):
    call_serpapi(search_params(plan(), "coffee", 0, ""), api.url, KEY, 5.0, fresh=True)
    assert api.requests[-1]["no_cache"] == "true"


def test_bad_key_is_told_apart_and_never_echoed(api):
    with pytest.raises(SerpApiAuthError, match="401") as info:
        call_serpapi(search_params(plan(), "coffee", 0, ""), api.url, SecretStr("sk-wrong-999"), 5.0)
    assert "sk-wrong-999" not in str(info.value) and info.value.__cause__ is None


def test_exhausted_plan_is_told_apart_from_throughput_limits(api):
    api.faults = ["exhausted", 429, 500]
    params = search_params(plan(), "coffee", 0, "")
    with pytest.raises(SerpApiPlanExhausted, match="plan exhausted"):
        call_serpapi(params, api.url, KEY, 5.0)
    with pytest.raises(SerpApiTransientError, match="429"):
        call_serpapi(params, api.url, KEY, 5.0)
    with pytest.raises(SerpApiTransientError, match="500") as info:
        call_serpapi(params, api.url, KEY, 5.0)
    assert "test-key" not in str(info.value)


def test_unreachable_serpapi_is_transient():
    with pytest.raises(SerpApiTransientError, match="unreachable"):
        call_serpapi({"engine": "google_images", "q": "x", "ijn": 0}, "http://127.0.0.1:9", KEY, 2.0)


def test_bad_parameters_fail_as_a_request_error(api):
    with pytest.raises(SerpApiRequestError, match="400"):
        call_serpapi({"engine": "google_images", "ijn": 0}, api.url, KEY, 5.0)


@pytest.mark.parametrize(("exc", "retry"), [
    (SerpApiTransientError("429"), True), (SerpApiAuthError("401"), False),
    (SerpApiPlanExhausted("plan"), False), (SerpApiRequestError("400"), False),
])
def test_only_transient_errors_are_retried(exc, retry):
    assert retry_transient(fetch_page, None, Failed(data=exc)) is retry
