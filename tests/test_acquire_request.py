"""Acquisition requests: the older project's dictionaries accepted unchanged, normalized into label plans."""

from __future__ import annotations

import json

import pytest

from models.acquire_request import (
    LabelPlan,
    imagesize_suffix,
    parse_acquire_request,
    plans_from_command,
    validate_plans,
)
from models.command import Command
from models.errors import CommandError, UserError
from tests.helpers import seed_commands_dir

SEEDS = seed_commands_dir()


def seed(name: str) -> dict:
    path = SEEDS / f"{name}.json"
    if not path.exists():
        pytest.skip(f"seed file {path} not present")
    return json.loads(path.read_text())


def test_add_to_db_seed_is_accepted_unchanged():
    plans, key = parse_acquire_request(seed("add_to_db"))
    assert [p.label for p in plans] == ["Coffee"]
    plan = plans[0]
    assert plan.queries == ["Coffee"] and plan.target == 100 and plan.first_page == 0
    assert plan.desired_chips_name == "phone" and plan.no_cache is True
    assert plan.google_domain == "google.com"
    assert key is None  # "<api_key>" is a placeholder, not a key


def test_multiple_query_seed_names_labels_with_imagesize():
    plans, _ = parse_acquire_request(seed("multiple_query"))
    assert [p.label for p in plans] == [
        "american foxhound imagesize:500x500", "german shephard imagesize:500x500",
        "caucasian shepherd imagesize:500x500",
    ]
    assert all(p.pages == 2 and p.target == 100 and p.desired_chips_name == "dog" for p in plans)
    assert plans[0].queries == ["american foxhound imagesize:500x500"]


def test_real_key_in_request_is_returned_as_secret_and_kept_out_of_plans():
    raw = {"q": "tea", "api_key": "sk-live-123"}
    plans, key = parse_acquire_request(raw)
    assert key is not None and key.get_secret_value() == "sk-live-123"
    assert "sk-live-123" not in repr(key)
    assert "sk-live-123" not in json.dumps([p.model_dump() for p in plans])


def test_command_labels_become_plans():
    command = Command.model_validate({
        "model_name": "m", "acquire": {"per_label": 40, "no_cache": True},
        "labels": [{"name": "cat", "queries": ["cat", "chat", "gato"], "pages": 3},
                   {"name": "dog", "limit": 7}],
    })
    plans = plans_from_command(command)
    assert plans[0].queries == ["cat", "chat", "gato"] and plans[0].pages == 3 and plans[0].target == 40
    assert plans[1].queries == ["dog"] and plans[1].target == 7 and plans[1].no_cache is True


def test_command_file_is_accepted_by_kind():
    plans, key = parse_acquire_request({"model_name": "m", "labels": ["cat", "dog"]})
    assert [p.label for p in plans] == ["cat", "dog"] and key is None


def test_add_to_db_rejects_unknown_field_with_its_path():
    with pytest.raises(CommandError) as info:
        parse_acquire_request({"q": "tea", "limt": 5})
    assert "limt: unknown field" in str(info.value) and "limit" in str(info.value)


def test_multiple_query_rejects_bad_value_with_its_path():
    with pytest.raises(CommandError) as info:
        parse_acquire_request({"queries": ["a"], "number_of_pages": 0, "safe": "maybe"})
    message = str(info.value)
    assert "number_of_pages:" in message and "safe:" in message


def test_request_of_unknown_kind_is_a_user_error():
    with pytest.raises(UserError, match="exactly one of q"):
        parse_acquire_request({"query": "tea"})
    with pytest.raises(UserError, match="object"):
        parse_acquire_request(["tea"])


def test_imagesize_suffix_fills_a_missing_side():
    assert imagesize_suffix(None, None) == ""
    assert imagesize_suffix(300, 200) == " imagesize:300x200"
    assert imagesize_suffix(None, 400) == " imagesize:400x400"


def test_validate_plans_reports_the_plan_index():
    good = LabelPlan(label="a", queries=["a"], pages=1, target=1)
    with pytest.raises(CommandError, match=r"plans\[1\]\.target"):
        validate_plans([good, {"label": "b", "queries": ["b"], "pages": 1, "target": 0}])
