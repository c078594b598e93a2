"""The acquisition flow end to end, on Prefect's test harness, against a fake SerpApi and a faulty image host:
the run completes, bad images are counted by reason, good ones stored, re-runs add nothing and spend nothing,
quotas stop at the target or the page budget, errors fail fast, and the key never leaks."""

from __future__ import annotations

import json
import time

import pytest
from PIL import Image
from prefect.client.orchestration import get_client

from flows import cli
from flows.acquire import acquire_labels
from models.acquire_request import LabelPlan
from models.errors import UserError
from store import open_store
from tasks.search import SerpApiAuthError, SerpApiPlanExhausted
from tests.fixtures.fake_serpapi import FakeSerpApi
from tests.fixtures.image_host import ImageHost
from tests.helpers import seed_commands_dir

SEEDS = seed_commands_dir()


pytestmark = pytest.mark.usefixtures("prefect_harness")


@pytest.fixture
def host():
    with ImageHost() as server:
        yield server


@pytest.fixture
def api():
    with FakeSerpApi(per_page=10) as server:
        yield server


@pytest.fixture
def env(tmp_path, monkeypatch, api):
    for name, value in {
        "SERPTRAIN_DATA_DIR": str(tmp_path / "data"), "SERPTRAIN_SERPAPI_URL": api.url,
        "SERPTRAIN_STORE": f"sqlite:///{tmp_path / 'store.db'}", "SERPTRAIN_ALLOW_PRIVATE_HOSTS": "1",
        "SERPAPI_API_KEY": "test-key", "SERPTRAIN_ACQUIRE_SEARCH_RETRY_DELAY_S": "0.01",
        "SERPTRAIN_ACQUIRE_DOWNLOAD_TIMEOUT_S": "0.5", "SERPTRAIN_ACQUIRE_DOWNLOAD_RETRIES": "1",
        "SERPTRAIN_ACQUIRE_DOWNLOAD_RETRY_DELAY_S": "0.01", "SERPTRAIN_ACQUIRE_MAX_BYTES": str(2**20),
        "PREFECT_HOME": str(tmp_path / "prefect-home"), "PREFECT_LOGGING_LEVEL": "WARNING",
    }.items():
        monkeypatch.setenv(name, value)
    return tmp_path


def plan(label: str, target: int, pages: int, **extra) -> LabelPlan:
    return LabelPlan(label=label, queries=extra.pop("queries", [label]), pages=pages, target=target, **extra)


def test_faults_counted_good_stored_and_reruns_spend_nothing(env, api, host):
    good = [host.good(f"g/{i}.png", i) for i in range(24)]
    faults = host.standard_faults()
    odd = [good[0], host.near_duplicate("near.jpg", 1), host.wrong_content_type("odd.png", 500),
           host.flaky("f.png", 501)]
    cats = good[:14] + list(faults.values()) + odd
    api.add_query("cats", cats)
    api.add_query("dogs", good[14:])
    api.add_suggestion("cats", "phone", "q:cats,g_1:phone")
    plans = [plan("cats", 100, 5, desired_chips_name="phone"), plan("dogs", 5, 2)]
    store_url = f"sqlite:///{env / 'store.db'}"

    report = acquire_labels(plans, store_url)
    cats_report = report["labels"]["cats"]
    assert cats_report["rejected"] == {reason: 1 for reason in faults}
    assert cats_report["stored"] == 16
    assert cats_report["duplicates"] == 1 and cats_report["near_duplicates"] == 1
    assert cats_report["seen"] == len(cats) and cats_report["chips"] == {"cats": "q:cats,g_1:phone"}
    assert report["labels"]["dogs"]["stored"] == 10 and report["labels"]["dogs"]["pages"] == 1
    store = open_store(store_url)
    assert store.count("cats") == 16 and store.count("dogs") == 10
    with Image.open(report["contact_sheets"]["cats"]) as sheet:
        assert sheet.format == "PNG" and sheet.width > 100

    spent = api.count
    again = acquire_labels(plans, store_url)
    assert api.count == spent  # every page came from the cache
    assert again["labels"]["cats"]["stored"] == 0 and store.count("cats") == 16 and store.count("dogs") == 10

    fresh_store = f"sqlite:///{env / 'other.db'}"
    acquire_labels(plans, fresh_store)
    assert api.count == spent and open_store(fresh_store).count("cats") == 16

    acquire_labels([plan("dogs", 50, 1, no_cache=True)], fresh_store)
    assert api.count == spent + 1 and api.requests[-1]["no_cache"] == "true"


def test_quota_asks_for_more_pages_until_the_target(env, api, host):
    api.add_query("birds", [host.good(f"b/{i}.png", 1000 + i) for i in range(60)])
    report = acquire_labels([plan("birds", 25, 6)], None)
    assert report["labels"]["birds"]["usable_in_store"] >= 25
    assert report["labels"]["birds"]["pages"] == api.count == 3  # 1 page, then 2 at the observed yield


def test_quota_stops_when_results_run_out_or_the_budget_is_spent(env, api, host):
    api.add_query("fish", [host.good(f"f/{i}.png", 2000 + i) for i in range(25)])
    api.add_query("frogs", [host.good(f"r/{i}.png", 3000 + i) for i in range(100)])
    report = acquire_labels([plan("fish", 500, 10), plan("frogs", 500, 2)], None)
    assert report["labels"]["fish"]["usable_in_store"] == 25
    # the first wave is sized by the shortfall (5 pages of 100 expected); an empty page ends the query
    assert report["labels"]["fish"]["pages"] == 5 and api.count == 5 + 2
    assert report["labels"]["frogs"]["pages"] == 2 and report["labels"]["frogs"]["usable_in_store"] == 20


def test_the_training_pipeline_can_call_acquisition_for_a_command(env, api, host):
    from prefect import flow

    from flows.acquire import acquire_for_command
    from models.command import Command

    api.add_query("cat", [host.good(f"c/{i}.png", 4100 + i) for i in range(3)])
    api.add_query("dog", [host.good(f"d/{i}.png", 4200 + i) for i in range(3)])
    command = Command.model_validate({"model_name": "m", "labels": [{"name": "cat", "limit": 3},
                                                                   {"name": "dog", "limit": 3}]})

    @flow
    def parent() -> dict:
        return acquire_for_command(command, None)

    report = parent()
    assert {label: entry["stored"] for label, entry in report["labels"].items()} == {"cat": 3, "dog": 3}


def test_several_queries_feed_one_label(env, api, host):
    api.add_query("cat", [host.good(f"c/{i}.png", 4000 + i) for i in range(5)])
    api.add_query("gato", [host.good(f"g/{i}.png", 5000 + i) for i in range(5)])
    report = acquire_labels([plan("cat", 10, 1, queries=["cat", "gato"])], None)
    assert report["labels"]["cat"]["stored"] == 10 and api.count == 2


def test_throughput_limits_and_server_errors_are_retried(env, api, host):
    api.add_query("owls", [host.good("o.png", 6000)])
    api.faults = [429, 500, 503]
    report = acquire_labels([plan("owls", 1, 1)], None)
    assert report["labels"]["owls"]["stored"] == 1 and api.count == 4


def test_bad_key_fails_at_once_saying_so(env, api, host):
    api.add_query("owls", [host.good("o.png", 6000)])
    with pytest.raises(SerpApiAuthError, match="401"):
        acquire_labels([plan("owls", 1, 1)], None, api_key="sk-wrong")
    assert api.count == 1


def test_exhausted_plan_fails_at_once_saying_so(env, api, host):
    api.add_query("owls", [host.good("o.png", 6000)])
    api.faults = ["exhausted"]
    with pytest.raises(SerpApiPlanExhausted, match="plan exhausted"):
        acquire_labels([plan("owls", 1, 1)], None)
    assert api.count == 1


def test_missing_key_is_a_user_error_before_any_request(env, api, monkeypatch):
    monkeypatch.delenv("SERPAPI_API_KEY")
    with pytest.raises(UserError, match="SERPAPI_API_KEY"):
        acquire_labels([plan("owls", 1, 1)], None)
    assert api.count == 0


def test_cache_expiration_is_configurable(env, api, host, monkeypatch):
    monkeypatch.setenv("SERPTRAIN_ACQUIRE_CACHE_EXPIRATION_S", "1")
    api.add_query("owls", [host.good("o.png", 6000)])
    acquire_labels([plan("owls", 1, 1)], None)
    time.sleep(1.2)
    acquire_labels([plan("owls", 1, 1)], f"sqlite:///{env / 'other.db'}")
    assert api.count == 2  # expired: asked again


def test_key_from_the_prefect_secret_block(env, api, host, monkeypatch):
    from prefect.blocks.system import Secret

    monkeypatch.delenv("SERPAPI_API_KEY")
    Secret(value="test-key").save("serpapi-api-key", overwrite=True)
    try:
        api.add_query("owls", [host.good("o.png", 6000)])
        assert acquire_labels([plan("owls", 1, 1)], None)["labels"]["owls"]["stored"] == 1
    finally:
        Secret.delete("serpapi-api-key")


def test_key_never_reaches_store_cache_artifacts_or_logs(env, api, host):
    secret = "sk-SECRET-7f3a9"
    api.api_key = secret
    api.add_query("owls", [host.good(f"o/{i}.png", 7000 + i) for i in range(3)])
    acquire_labels([plan("owls", 3, 1)], f"sqlite:///{env / 'store.db'}", api_key=secret)
    files = [p for p in env.rglob("*") if p.is_file()]
    assert files and not [p for p in files if secret.encode() in p.read_bytes()]
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts()
        runs = client.read_flow_runs()
        logs = client.read_logs()
    assert {"acquire-report", "acquire-contact-sheets"} <= {a.key for a in artifacts}
    texts = [json.dumps(a.data, default=str) for a in artifacts] + [json.dumps(r.parameters, default=str)
                                                                    for r in runs]
    texts += [log.message for log in logs]
    assert not [t for t in texts if secret in t]


def seed_file(name: str) -> str:
    path = SEEDS / f"{name}.json"
    if not path.exists():
        pytest.skip(f"seed file {path} not present")
    return str(path)


def test_cli_accepts_the_add_to_db_seed(env, api, host, capsys):
    api.add_query("Coffee", [host.good(f"k/{i}.png", 8000 + i) for i in range(3)])
    api.add_query("Coffee", [host.good(f"p/{i}.png", 8100 + i) for i in range(4)], chips="q:coffee,g_1:phone")
    api.add_suggestion("Coffee", "phone", "q:coffee,g_1:phone")
    assert cli.main(["acquire", seed_file("add_to_db"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["labels"]["Coffee"]["stored"] == 4  # the phone chips' results, not the plain query's
    assert all(r.get("no_cache") == "true" for r in api.requests)


def test_cli_accepts_the_multiple_query_seed(env, api, host, capsys):
    for n, query in enumerate(["american foxhound", "german shephard", "caucasian shepherd"]):
        q = f"{query} imagesize:500x500"
        api.add_query(q, [host.good(f"{n}/{i}.png", 9000 + 10 * n + i) for i in range(2)])
        api.add_suggestion(q, "dog", f"q:{n},dog")
    assert cli.main(["acquire", seed_file("multiple_query")]) == 0
    out = capsys.readouterr().out
    assert "german shephard imagesize:500x500" in out and "contact sheet" in out
    assert open_store(None).count("caucasian shepherd imagesize:500x500") == 2


def test_cli_reports_bad_input_without_traceback(env, tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"queries": ["a"], "number_of_pages": "many"}))
    assert cli.main(["acquire", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: number_of_pages:") and "Traceback" not in err
