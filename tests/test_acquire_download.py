"""Downloads against a local image host with faults: every bad image counted under its reason, every good
one stored, retries only where they can help, private hosts refused unless allowed."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from models.errors import UserError
from models.images import content_key
from store import open_store
from tasks.download import Downloader, DownloadOptions, DownloadRejected, download_and_ingest
from tasks.ingest import Ingestor
from tasks.netguard import address_allowed, parse_networks
from tests.fixtures.image_host import ImageHost, Route, encode, smooth_image

FAST = DownloadOptions(workers=8, per_host=4, max_bytes=2**20, timeout_s=0.5, max_redirects=3, retries=1,
                       retry_delay_s=0.01, allow_private=True)


@pytest.fixture
def host():
    with ImageHost() as server:
        yield server


@pytest.fixture
def store(tmp_path):
    yield open_store(f"sqlite:///{tmp_path / 'store.db'}")


def items(urls):
    return [{"position": i + 1, "original": url, "title": f"t{i}", "link": f"https://example.org/{i}",
             "source": "example.org"} for i, url in enumerate(urls)]


def test_each_fault_is_counted_under_its_reason_and_good_images_are_stored(host, store):
    faults = host.standard_faults()
    good = [host.good(f"g/{i}.png", i) for i in range(6)]
    extra = [host.wrong_content_type("odd.png", 100), host.flaky("flaky.png", 101),
             host.good("w.webp", 102, "WEBP"), host.good("j.jpg", 103, "JPEG"),
             host.good("b.bmp", 104, "BMP"), host.good("a.gif", 105, "GIF")]
    dup_and_near = [host.add("copy.png", Route(encode(smooth_image(0)))), host.near_duplicate("near.jpg", 1)]
    urls = good + extra + dup_and_near + list(faults.values()) + ["ftp://127.0.0.1/x.png", ""]
    report, usable = download_and_ingest(items(urls), "cats", "cats", 0, "sid", Ingestor(store), FAST)
    counts = report.label("cats")
    expected = {reason: 1 for reason in faults} | {"bad_scheme": 1, "no_url": 1}
    assert dict(counts.rejected) == expected
    assert counts.seen == len(urls)
    assert counts.stored == len(good) + len(extra)
    assert counts.duplicates == 1 and counts.near_duplicates == 1
    assert counts.seen == counts.downloaded + sum(counts.rejected.values())
    assert store.count("cats") == len(good) + len(extra)
    assert len(usable) == counts.stored + counts.duplicates


def test_provenance_is_kept_per_image(host, store):
    url = host.good("p.png", 7)
    download_and_ingest(items([url]), "cats", "cats imagesize:64x64", 2, "search-42", Ingestor(store), FAST)
    meta = store.get_meta(store.keys("cats")[0])
    source = meta.sources[0]
    assert source["query"] == "cats imagesize:64x64" and source["page"] == 2 and source["position"] == 1
    assert source["original"] == url and source["link"] == "https://example.org/0"
    assert source["title"] == "t0" and source["source"] == "example.org"
    assert source["search_id"] == "search-42"


def test_rerun_adds_nothing(host, store):
    urls = [host.good(f"g/{i}.png", i) for i in range(5)]
    download_and_ingest(items(urls), "cats", "cats", 0, None, Ingestor(store), FAST)
    report, _ = download_and_ingest(items(urls), "cats", "cats", 0, None, Ingestor(store), FAST)
    assert report.label("cats").stored == 0 and report.label("cats").duplicates == 5
    assert store.count("cats") == 5


def test_4xx_is_not_retried_but_5xx_and_timeouts_are(host):
    missing = host.add("missing.png", Route(b"no", status=404))
    broken = host.add("broken.png", Route(b"no", status=503))
    slow = host.add("slow.png", Route(encode(smooth_image(1)), delay_s=2.0))
    with Downloader(FAST) as downloader:
        for url, reason in ((missing, "http_404"), (broken, "http_503"), (slow, "timeout")):
            with pytest.raises(DownloadRejected, match=reason):
                downloader.fetch(url)
    assert host.hits["/missing.png"] == 1
    assert host.hits["/broken.png"] == 2 and host.hits["/slow.png"] == 2  # retries=1


def test_flaky_host_recovers_on_retry(host):
    url = host.flaky("flaky.png", 3, failures=1)
    with Downloader(FAST) as downloader:
        assert content_key(downloader.fetch(url)) == content_key(encode(smooth_image(3)))
    assert host.hits["/flaky.png"] == 2


def test_redirects_are_followed_within_the_bound(host):
    target = host.good("final.png", 5)
    host.add("hop2", Route(status=302, redirect_to="/final.png"))
    host.add("hop1", Route(status=301, redirect_to=host.url("hop2")))
    with Downloader(FAST) as downloader:
        assert downloader.fetch(host.url("hop1")) == encode(smooth_image(5))
        with pytest.raises(DownloadRejected, match="too_many_redirects"):
            downloader.fetch(host.add("loop", Route(status=302, redirect_to="/loop")))
    assert target


def test_private_hosts_are_refused_unless_allowed(host):
    url = host.good("p.png", 1)
    strict = DownloadOptions(**{**FAST.__dict__, "allow_private": False})
    with Downloader(strict) as downloader:
        with pytest.raises(DownloadRejected, match="private_host"):
            downloader.fetch(url)
        with pytest.raises(DownloadRejected, match="private_host"):
            downloader.fetch("http://169.254.169.254/latest/meta-data")
    assert host.hits["/p.png"] == 0


def test_redirect_to_a_private_host_is_refused(host):
    # 127.0.0.1 is trusted (as an operator trusts an internal mirror); 127.0.0.2 is an untrusted private host.
    with ImageHost(address="127.0.0.2") as inner:
        target = inner.good("x.png", 1)
        url = host.add("out", Route(status=302, redirect_to=target))
        strict = DownloadOptions(**{**FAST.__dict__, "allow_private": False, "trusted_networks": "127.0.0.1/32"})
        with Downloader(strict) as downloader, pytest.raises(DownloadRejected, match="private_host"):
            downloader.fetch(url)
        assert host.hits["/out"] == 1 and inner.hits["/x.png"] == 0


def test_trusted_network_is_reachable_though_private(host):
    url = host.good("t.png", 3)
    strict = DownloadOptions(**{**FAST.__dict__, "allow_private": False, "trusted_networks": "127.0.0.0/8"})
    with Downloader(strict) as downloader:
        assert downloader.fetch(url) == host.routes["/t.png"].body


def test_a_name_that_rebinds_to_a_private_address_is_refused(monkeypatch):
    # A fake resolver (the outside world): public when the name is checked, loopback when urllib3 connects.
    real_getaddrinfo = socket.getaddrinfo
    answers = iter(["93.184.216.34"])

    def rebinding_dns(name, port, *args, **kwargs):
        if name != "images.rebind.test":
            return real_getaddrinfo(name, port, *args, **kwargs)
        address = next(answers, "127.0.0.2")
        return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (address, port or 0))]

    monkeypatch.setattr(socket, "getaddrinfo", rebinding_dns)
    with ImageHost(address="127.0.0.2") as private:
        private.good("p.png", 2)
        strict = DownloadOptions(**{**FAST.__dict__, "allow_private": False, "retries": 0})
        url = f"http://images.rebind.test:{private.server.server_address[1]}/p.png"
        with Downloader(strict) as downloader, pytest.raises(DownloadRejected, match="private_host"):
            downloader.fetch(url)
        assert private.hits["/p.png"] == 0


def test_size_cap_applies_without_content_length(host):
    small = DownloadOptions(**{**FAST.__dict__, "max_bytes": 1000})
    url = host.add("big.png", Route(encode(smooth_image(1), "BMP")))
    with Downloader(small) as downloader, pytest.raises(DownloadRejected, match="too_large"):
        downloader.fetch(url)


def test_connections_are_reused(host):
    urls = [host.good(f"r/{i}.png", i) for i in range(40)]
    ports: set[int] = set()
    original = host.server.finish_request

    def track(request, client_address):
        ports.add(client_address[1])
        return original(request, client_address)

    host.server.finish_request = track
    options = DownloadOptions(**{**FAST.__dict__, "workers": 4, "per_host": 4})
    with Downloader(options) as downloader:
        for url in urls:
            downloader.fetch(url)
    assert len(ports) < len(urls) / 4


def test_labels_share_splits_for_near_duplicates_and_mark_exact_copies_ambiguous(host, store):
    ingestor = Ingestor(store)
    original, near = host.good("a.png", 11), host.near_duplicate("a-near.jpg", 11)
    shared = host.good("s.png", 12)
    download_and_ingest(items([original, shared]), "cats", "cats", 0, None, ingestor, FAST)
    report, _ = download_and_ingest(items([near, shared]), "dogs", "dogs", 0, None, ingestor, FAST)
    counts = report.label("dogs")
    assert counts.stored == 1 and counts.ambiguous == 1
    near_key = content_key(encode(smooth_image(11), "JPEG", quality=85))
    original_key = content_key(encode(smooth_image(11)))
    assert store.get_meta(near_key).split == store.get_meta(original_key).split  # no leak across splits
    assert store.get_meta(content_key(encode(smooth_image(12)))).ambiguous
    assert store.count("dogs") == 1  # the ambiguous copy is left out of training


def test_malformed_urls_are_counted_not_raised(store):
    urls = ["http://[::1/x.png", "http://127.0.0.1:99999/x.png", "https:///nohost.png"]
    report, _ = download_and_ingest(items(urls), "cats", "cats", 0, None, Ingestor(store), FAST)
    counts = report.label("cats")
    assert sum(counts.rejected.values()) == 3 and counts.stored == 0


def test_a_host_dripping_bytes_meets_the_time_cap():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()

    def drip() -> None:
        conn, _ = server.accept()
        conn.recv(4096)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: 100000\r\n\r\n")
        try:
            for _ in range(40):
                conn.sendall(b"x")
                time.sleep(0.1)
        except OSError:
            pass
        conn.close()

    threading.Thread(target=drip, daemon=True).start()
    options = DownloadOptions(**{**FAST.__dict__, "timeout_s": 1.0, "retries": 0})
    started = time.monotonic()
    with Downloader(options) as downloader, pytest.raises(DownloadRejected, match="timeout"):
        downloader.fetch(f"http://127.0.0.1:{server.getsockname()[1]}/drip.png")
    assert time.monotonic() - started < 2.5
    server.close()


@pytest.mark.parametrize(("address", "allowed"), [
    ("93.184.216.34", True), ("2606:4700:4700::1111", True), ("::ffff:93.184.216.34", True),
    ("127.0.0.1", False), ("::ffff:127.0.0.1", False), ("::1", False), ("10.1.2.3", False),
    ("169.254.169.254", False), ("100.100.100.200", False), ("fe80::1%eth0", False), ("224.0.0.1", False),
    ("0.0.0.0", False),
])
def test_only_global_unicast_addresses_are_reachable(address, allowed):
    assert address_allowed(address) is allowed


def test_trusted_networks_open_only_themselves():
    trusted = parse_networks(" 10.1.0.0/16, 192.168.5.7 ")
    assert address_allowed("10.1.200.3", trusted) and address_allowed("192.168.5.7", trusted)
    assert not address_allowed("10.2.0.1", trusted) and not address_allowed("192.168.5.8", trusted)
    with pytest.raises(ValueError, match="'intranet' is not an IP address or network"):
        parse_networks("10.0.0.0/8,intranet")


def test_downloads_send_the_configured_user_agent(host, monkeypatch):
    from models.acquire_request import load_acquire_settings
    from models.settings import load_settings
    from tasks.download import options_from_settings

    monkeypatch.setenv("SERPTRAIN_ACQUIRE_USER_AGENT", "Mozilla/5.0 (compatible; team-mirror)")
    monkeypatch.setenv("SERPTRAIN_ALLOW_PRIVATE_HOSTS", "1")
    with Downloader(options_from_settings(load_settings(), load_acquire_settings())) as downloader:
        downloader.fetch(host.good("ua.png", 4))
    assert host.user_agents == {"Mozilla/5.0 (compatible; team-mirror)"}
    monkeypatch.setenv("SERPTRAIN_ACQUIRE_PER_HOST", "0")
    with pytest.raises(UserError, match="SERPTRAIN_ACQUIRE_PER_HOST: Input should be greater than or equal to 1"):
        load_acquire_settings()
