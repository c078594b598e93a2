"""Downloads of one result page: a bounded thread pool inside one Prefect task (no task per image).

Every URL is fetched through one urllib3 PoolManager (connection reuse), at most `per_host` at a time per
host; http(s) only, redirects followed by hand so each hop is checked, size and time capped, retried on
timeouts, connection errors and 5xx but never on 4xx. Private, loopback and link-local hosts are refused
unless allowed.
The bytes are then verified and stored by the Ingestor; every failure is counted under its reason.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

import urllib3
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.exceptions import MissingContextError

from models.acquire_request import AcquireSettings
from models.images import content_key
from models.settings import Settings, load_settings
from store import open_store
from tasks.ingest import Ingestor, IngestReport
from tasks.netguard import PrivatePeer, guard_connections, host_allowed, parse_networks

REDIRECTS = (301, 302, 303, 307, 308)


class DownloadRejected(Exception):
    """A URL that gave no usable body; .reason is a short stable word for reports."""

    def __init__(self, reason: str, retryable: bool = False):
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable


@dataclass(frozen=True)
class DownloadOptions:
    workers: int = 32
    per_host: int = 6
    max_bytes: int = 20 * 2**20
    timeout_s: float = 20.0
    max_redirects: int = 5
    retries: int = 2
    retry_delay_s: float = 0.5
    allow_private: bool = False
    trusted_networks: str = ""  # reachable although private (an internal mirror): "10.1.0.0/16, ..."
    user_agent: str = AcquireSettings.model_fields["user_agent"].default


def options_from_settings(settings: Settings, knobs: AcquireSettings) -> DownloadOptions:
    """The download options the environment asks for (SERPTRAIN_* and SERPTRAIN_ACQUIRE_*)."""
    return DownloadOptions(
        workers=knobs.download_workers, per_host=knobs.per_host, max_bytes=knobs.max_bytes,
        timeout_s=knobs.download_timeout_s, max_redirects=knobs.max_redirects, retries=knobs.download_retries,
        retry_delay_s=knobs.download_retry_delay_s, allow_private=settings.allow_private_hosts,
        trusted_networks=settings.trusted_networks, user_agent=knobs.user_agent,
    )


class Downloader:
    """Thread-safe; one per page task. Close it (or use `with`) to release pooled connections.

    urllib3's PoolManager keeps a keep-alive pool per host; it is the engine under requests.Session without
    the session's per-request overhead, which matters when a page task moves hundreds of images a second.
    """

    def __init__(self, options: DownloadOptions):
        self.options = options
        self.pool = urllib3.PoolManager(
            num_pools=256, maxsize=options.per_host, block=False, retries=False,
            timeout=urllib3.Timeout(connect=options.timeout_s, read=options.timeout_s),
            headers={"User-Agent": options.user_agent, "Accept": "image/*,*/*;q=0.5"},
        )
        self._trusted = parse_networks(options.trusted_networks)
        if not options.allow_private:
            guard_connections(self.pool, self._trusted)
        self._lock = threading.Lock()
        self._host_slots: dict[str, threading.Semaphore] = {}
        self._host_ok: dict[str, bool] = {}

    def __enter__(self) -> Downloader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.pool.clear()

    def _slot(self, host: str) -> threading.Semaphore:
        with self._lock:
            return self._host_slots.setdefault(host, threading.Semaphore(self.options.per_host))

    def _check_url(self, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise DownloadRejected("bad_scheme")
        host = parts.hostname
        if not self.options.allow_private:
            if host not in self._host_ok:
                self._host_ok[host] = self._host_allowed(host)
            if not self._host_ok[host]:
                raise DownloadRejected("private_host")
        return host

    def _host_allowed(self, host: str) -> bool:
        try:
            return host_allowed(host, self._trusted)
        except (socket.gaierror, UnicodeError):
            raise DownloadRejected("dns_error") from None

    def fetch(self, url: str) -> bytes:
        """The body of url, or DownloadRejected(reason) after the allowed retries."""
        attempt = 0
        while True:
            try:
                return self._follow(url)
            except DownloadRejected as exc:
                if not exc.retryable or attempt >= self.options.retries:
                    raise
            attempt += 1
            time.sleep(self.options.retry_delay_s * 2 ** (attempt - 1))

    def _follow(self, url: str) -> bytes:
        deadline = time.monotonic() + self.options.timeout_s
        for _hop in range(self.options.max_redirects + 1):
            host = self._check_url(url)
            with self._slot(host):
                location, body = self._get(url, deadline)
            if body is not None:
                return body
            url = urljoin(url, location)
        raise DownloadRejected("too_many_redirects")

    def _get(self, url: str, deadline: float) -> tuple[str, bytes | None]:
        """(redirect location, None) or ("", body)."""
        try:
            response = self.pool.request("GET", url, preload_content=False, redirect=False)
        except PrivatePeer:
            raise DownloadRejected("private_host") from None
        except urllib3.exceptions.TimeoutError:
            raise DownloadRejected("timeout", retryable=True) from None
        except urllib3.exceptions.HTTPError:  # refused, reset, a pooled connection the host had closed
            raise DownloadRejected("connection_error", retryable=True) from None
        body = None
        try:
            status = response.status
            if status in REDIRECTS and response.headers.get("location"):
                return response.headers["location"], None
            if status != 200:
                raise DownloadRejected(f"http_{status}", retryable=status >= 500)
            body = self._read(response, deadline)
            return "", body
        except urllib3.exceptions.TimeoutError:
            raise DownloadRejected("timeout", retryable=True) from None
        except urllib3.exceptions.HTTPError:  # IncompleteRead, reset mid-body
            raise DownloadRejected("incomplete_body") from None
        finally:
            if body is None:
                response.close()  # unread or broken: the pool reconnects rather than reuse it
            response.release_conn()

    def _read(self, response: urllib3.BaseHTTPResponse, deadline: float) -> bytes:
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.options.max_bytes:
            raise DownloadRejected("too_large")
        chunks, size = [], 0
        # read1: whatever one receive brings, so a host dripping bytes meets the deadline; decoded, so a
        # gzip bomb is capped after decompression.
        while chunk := response.read1(65536):
            size += len(chunk)
            if size > self.options.max_bytes or time.monotonic() > deadline:
                raise DownloadRejected("too_large" if size > self.options.max_bytes else "timeout",
                                       retryable=size <= self.options.max_bytes)
            chunks.append(chunk)
        return b"".join(chunks)


def run_bounded(items: Iterable[Any], work: Callable[[Any], None], workers: int) -> None:
    """Apply work to every item on a bounded pool; work handles its own errors."""
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="download") as pool:
        for future in [pool.submit(work, item) for item in items]:
            future.result()


# The page task ------------------------------------------------------------------------------------------

_INGESTORS: dict[tuple[str, str], Ingestor] = {}
_INGESTORS_LOCK = threading.Lock()


def shared_ingestor(store_url: str | None, run_id: str, near_threshold: int, min_side: int) -> Ingestor:
    """One Ingestor per acquisition run and process: concurrent page tasks of a label see each other's
    perceptual hashes, so near duplicates are caught across pages."""
    url = store_url or load_settings().store
    with _INGESTORS_LOCK:
        key = (url, run_id)
        if key not in _INGESTORS:
            _INGESTORS[key] = Ingestor(open_store(url), near_threshold=near_threshold, min_side=min_side)
        return _INGESTORS[key]


def release_ingestors(run_id: str) -> None:
    with _INGESTORS_LOCK:
        for key in [k for k in _INGESTORS if k[1] == run_id]:
            del _INGESTORS[key]


def provenance(item: dict[str, Any], query: str, ijn: int, search_id: str | None) -> dict[str, Any]:
    return {"engine": "google_images", "query": query, "page": ijn, "position": item.get("position"),
            "original": item.get("original"), "link": item.get("link"), "title": item.get("title"),
            "source": item.get("source"), "search_id": search_id}


def download_and_ingest(
    items: list[dict[str, Any]], label: str, query: str, ijn: int, search_id: str | None,
    ingestor: Ingestor, options: DownloadOptions,
) -> tuple[IngestReport, list[str]]:
    """Fetch every result's original on a bounded pool and ingest it; returns (report, usable keys)."""
    report = IngestReport()
    report.label(label).seen += len(items)
    usable: list[str] = []

    def one(item: dict[str, Any]) -> None:
        url = str(item.get("original") or "")
        if not url:
            ingestor.reject(label, "no_url", report)
            return
        try:
            data = downloader.fetch(url)
        except DownloadRejected as exc:
            ingestor.reject(label, exc.reason, report)
            return
        except ValueError:  # a URL no parser accepts (bad IPv6 literal, port, IDNA)
            ingestor.reject(label, "bad_url", report)
            return
        except Exception:  # one strange URL never stops a page; its reason is still counted
            ingestor.reject(label, "fetch_error", report)
            return
        outcome = ingestor.ingest(data, label, provenance(item, query, ijn, search_id), report)
        if outcome in ("stored", "duplicate"):
            usable.append(content_key(data))  # list.append is atomic: no lock needed

    with Downloader(options) as downloader:
        run_bounded(items, one, options.workers)
    return report, usable


def task_logger() -> logging.Logger | logging.LoggerAdapter:
    """The run logger inside Prefect; a plain logger when the body runs through .fn (tests, bench)."""
    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger(__name__)


@task(name="download-page", task_run_name="download {label} ijn={ijn}", cache_policy=NO_CACHE,
      persist_result=False)
def download_page(
    page: dict[str, Any], label: str, query: str, ijn: int, store_url: str | None, run_id: str,
    options: dict[str, Any] | None = None, near_threshold: int = 4, min_side: int = 16,
) -> dict[str, Any]:
    """Download, verify and store one result page's images; returns this page's report for the label."""
    logger = task_logger()
    ingestor = shared_ingestor(store_url, run_id, near_threshold, min_side)
    report, usable = download_and_ingest(page.get("images") or [], label, query, ijn, page.get("search_id"),
                                         ingestor, DownloadOptions(**(options or {})))
    counts = report.label(label)
    logger.info("%s ijn=%d: %d results, %d stored, rejected %s", query, ijn, counts.seen, counts.stored,
                dict(counts.rejected))
    return {"label": label, "query": query, "ijn": ijn, "results": len(page.get("images") or []),
            "report": counts.as_dict(), "keys": usable}
