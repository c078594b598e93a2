"""serptrain store {stats,setup,export,import} and serptrain attempts {list,show,delete}, end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flows.cli import main
from models.images import inspect_image
from store.base import ImagePut
from store.couchbase import CouchbaseStore
from store.sqlite import SQLiteStore
from store.transfer import export_store, import_export
from tests.fixtures.fake_couchbase import FakeCluster
from tests.fixtures.tiny_images import tiny_png


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "prefect"))
    monkeypatch.setenv("SERPTRAIN_STORE", f"sqlite:///{tmp_path / 'main.db'}")


def filled(url: str) -> SQLiteStore:
    store = SQLiteStore(url)
    items = []
    for i in range(12):
        data = tiny_png(i, "cli", side=16)
        items.append(ImagePut(data, inspect_image(data)[0], "cat" if i < 8 else "dog",
                              {"engine": "google", "query": "q", "position": i}))
    store.put_images(items)
    store.add_label(items[0].info.key, "dog", {"engine": "bing"})  # ambiguous
    store.mark(items[1].info.key, excluded=True)
    return store


def run(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_stats_text_and_json(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    store = filled(f"sqlite:///{tmp_path / 'main.db'}")
    code, out, _ = run(capsys, "store", "stats")
    assert code == 0 and "images: 12" in out and "excluded: 1" in out and "ambiguous: 1" in out
    cat_row = next(line for line in out.splitlines() if line.startswith("cat "))
    assert cat_row.split()[-1] == "6"  # 8 cats, one excluded, one ambiguous
    code, out, _ = run(capsys, "store", "stats", "--json")
    assert code == 0 and json.loads(out) == store.stats()


def test_setup_creates_the_sqlite_file(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code, out, _ = run(capsys, "store", "setup", "--store", f"sqlite:///{tmp_path / 'new' / 'x.db'}")
    assert code == 0 and "ready" in out and (tmp_path / "new" / "x.db").is_file()


def test_export_then_import_into_another_store(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    source = filled(f"sqlite:///{tmp_path / 'main.db'}")
    code, out, _ = run(capsys, "store", "export", str(tmp_path / "out"))
    assert code == 0 and "exported 12 images of 2 labels" in out
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["store"] == source.url and len(list((tmp_path / "out" / "cat").iterdir())) == 8
    assert all(img["sources"] for img in manifest["images"])
    target = f"sqlite:///{tmp_path / 'copy.db'}"
    code, out, _ = run(capsys, "store", "import", str(tmp_path / "out"), "--store", target, "--json")
    assert code == 0 and json.loads(out)["created"] == 12
    code, out, _ = run(capsys, "store", "import", str(tmp_path / "out"), "--store", target, "--json")
    assert json.loads(out)["created"] == 0  # idempotent
    copy = SQLiteStore(target)
    assert {k: v for k, v in copy.stats().items() if k != "store"} == \
           {k: v for k, v in source.stats().items() if k != "store"}
    for key in source.keys(include_excluded=True):
        a, b = source.get_meta(key), copy.get_meta(key)
        assert (a.labels, a.split, a.excluded, a.ambiguous, a.sources) == (b.labels, b.split, b.excluded,
                                                                             b.ambiguous, b.sources)


def test_export_moves_data_from_sqlite_to_couchbase(tmp_path: Path) -> None:
    source = filled(f"sqlite:///{tmp_path / 'main.db'}")
    export_store(source, tmp_path / "out")
    cluster = FakeCluster(buckets=["serptrain"])
    couch = CouchbaseStore(cluster, check_layout=False)
    couch.setup()
    report = import_export(couch, tmp_path / "out")
    assert report["created"] == 12 and report["rejected"] == {}
    assert couch.keys("cat") == source.keys("cat")
    assert couch.keys("dog", "train") == source.keys("dog", "train")
    assert couch.get_many(source.keys()) == source.get_many(source.keys())


def test_import_rejects_files_not_matching_their_key(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    export_store(filled(f"sqlite:///{tmp_path / 'main.db'}"), tmp_path / "out")
    victim = next((tmp_path / "out" / "dog").iterdir())
    victim.write_bytes(tiny_png(999, "other", side=16))
    code, out, _ = run(capsys, "store", "import", str(tmp_path / "out"), "--store",
                       f"sqlite:///{tmp_path / 'copy.db'}", "--json")
    report = json.loads(out)
    assert code == 0 and report["rejected"] == {"bytes_do_not_match_key": 1} and report["images"] == 11


def test_import_plain_label_folders(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    for i, label in enumerate(["cat", "cat", "dog"]):
        (tmp_path / "plain" / label).mkdir(parents=True, exist_ok=True)
        (tmp_path / "plain" / label / f"{i}.png").write_bytes(tiny_png(i, "plain", side=32))
    (tmp_path / "plain" / "dog" / "notes.png").write_bytes(b"<html>not an image</html>")
    code, out, _ = run(capsys, "store", "import", str(tmp_path / "plain"), "--json")
    assert code == 0 and json.loads(out)["stored"] == 3
    assert SQLiteStore(f"sqlite:///{tmp_path / 'main.db'}").count("cat", include_excluded=True) == 2


def test_store_mistakes_are_user_errors(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code, _, err = run(capsys, "store", "import", str(tmp_path / "nowhere"))
    assert code == 2 and err.startswith("error:") and "not a directory" in err and "Traceback" not in err
    store = SQLiteStore(f"sqlite:///{tmp_path / 'main.db'}")
    data = tiny_png(1, "slash", side=16)
    store.put_image(data, inspect_image(data)[0], "a/b")
    code, _, err = run(capsys, "store", "export", str(tmp_path / "out"))
    assert code == 2 and "cannot be a folder name" in err
    code, _, err = run(capsys, "store", "export", str(tmp_path / "out"), "--label", "zebra")
    assert code == 2 and "no label 'zebra'" in err
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "manifest.json").write_text("{}")
    code, _, err = run(capsys, "store", "import", str(tmp_path / "bad"))
    assert code == 2 and "not a serptrain export" in err


def test_attempts_list_show_delete(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    store = SQLiteStore(f"sqlite:///{tmp_path / 'main.db'}")
    first = store.create_attempt({"model_name": "shapes"})
    store.update_attempt(first, status="trained", epochs=[{"epoch": 1, "loss": 0.3}], metrics={"acc": 0.9})
    other = store.create_attempt({"model_name": "birds"})
    code, out, _ = run(capsys, "attempts", "list")
    assert code == 0 and first in out and other in out and "trained" in out
    code, out, _ = run(capsys, "attempts", "list", "--model", "birds", "--json")
    assert [a["id"] for a in json.loads(out)] == [other]
    code, out, _ = run(capsys, "attempts", "show", first)
    assert code == 0 and "trained" in out and '"loss": 0.3' in out and '"acc": 0.9' in out
    code, out, _ = run(capsys, "attempts", "show", first, "--json")
    assert json.loads(out) == store.get_attempt(first)
    code, out, _ = run(capsys, "attempts", "delete", first)
    assert code == 0 and store.get_attempt(first) is None
    code, _, err = run(capsys, "attempts", "show", first)
    assert code == 2 and f"no attempt '{first}'" in err
    code, _, err = run(capsys, "attempts", "delete", first)
    assert code == 2
