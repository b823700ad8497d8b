"""URL -> bytes, and the FetchPages stage (FeedEntry -> Page).

A ``Fetcher`` owns the policy (http/https only, redirect limit, size cap, status mapping) and delegates
single requests to a transport: ``HttpTransport`` for the network, ``ReplayTransport`` for recorded
responses listed in a manifest (fixtures, tests). Local feed files are read directly. Every failure
is a ``FetchError`` with a reason from the reject vocabulary; FetchPages turns it into a ``Reject``.

Guarantees:
- nothing outside http(s) is requested; a host with any loopback/private/link-local/reserved address is
  refused on every hop unless ``allow_private_addresses``, and the connection goes to the checked address;
- bodies are capped at ``max_bytes`` while streaming, after decompression (gzip bombs);
- one attempt takes at most ``timeout`` seconds from connect to the body's last byte, status line and
  headers included (connect and read limits inside it), politeness waits apart; at most ``retries`` more
  attempts, for timeouts, connection errors, 5xx and 429; a connection whose response was not read to
  the end is closed, never pooled;
- per fetcher, requests to one host are ``host_delay`` apart; FetchPages lets at most
  ``host_concurrency`` workers fetch from one host; article pages obey robots.txt;
- a conditional GET (validators given) may answer 304, which is not an error.
"""

from __future__ import annotations

import contextlib
import http.client
import ipaddress
import random
import socket
import threading
import time
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit
from urllib.robotparser import RobotFileParser

import apache_beam as beam
import urllib3

from pipelines import metrics
from pipelines.config import FetchConfig, Recorded, replay_manifest
from pipelines.failures import Guarded
from pipelines.records import FeedEntry, FeedState, Page, Reject
from pipelines.urls import is_web_url, resolve_url

REJECTS = "rejects"


class FetchError(Exception):
    def __init__(self, reason: str, detail: str, status: int | None = None, retry_after: float | None = None):
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail, self.status, self.retry_after = reason, detail, status, retry_after

    @property
    def retryable(self) -> bool:
        """Worth another try: the server or the network may do better later."""
        return self.reason in ("timeout", "connection_error", "http_5xx") or self.status == 429


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date); None if absent or invalid."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)


def backoff_delay(attempt: int, base: float, retry_after: float | None, jitter: float) -> float:
    """Wait before retry ``attempt`` (0-based): the server's Retry-After, else exponential with full jitter."""
    if retry_after is not None:
        return retry_after
    return base * (2 ** attempt) * jitter


@dataclass(frozen=True)
class Hop:
    """One request's answer, before redirects are followed."""

    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes


@dataclass(frozen=True)
class Response:
    final_url: str
    status: int  # 200-299, or 304 when validators were sent and the resource is unchanged
    content_type: str | None
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)  # lower-case names


class Transport(Protocol):
    def open(self) -> None: ...
    def close(self) -> None: ...
    def request(self, url: str, *, max_bytes: int, deadline: float,
                headers: dict[str, str] | None = None) -> Hop: ...


@dataclass
class Fetcher:
    """Fetch policy over a transport. Picklable; ``open()`` on the worker before use.

    Retries timeouts, connection errors, 5xx and 429 up to ``retries`` times with exponential back-off and
    full jitter, or after the server's Retry-After; a requested wait longer than ``max_retry_wait`` gives
    up at once. With ``check_robots``, robots.txt is fetched once per origin and worker and obeyed: a 4xx
    robots.txt allows everything, an unreachable one (5xx, timeout) disallows everything (RFC 9309).
    """

    config: FetchConfig
    transport: Transport | None = None  # default: replay when configured, else HTTP
    sleep: Callable[[float], None] = time.sleep
    jitter: Callable[[], float] = random.random
    _robots: dict[str, RobotFileParser] = field(default_factory=dict, init=False, repr=False)

    def open(self) -> None:
        if self.transport is None:
            self.transport = (ReplayTransport(self.config.replay) if self.config.replay
                              else HttpTransport(self.config))
        self.transport.open()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def get(self, url: str, *, check_robots: bool = False, validators: FeedState | None = None) -> Response:
        """The response for ``url``; with ``validators``, a conditional GET that may answer 304."""
        if not is_web_url(url):
            if url.startswith("file:") or "://" not in url:  # a local path, as the config allows for feeds
                return Response(url, 200, None, read_local(url, self.config.max_bytes))
            raise FetchError("bad_url", f"only http(s) URLs are fetched: {url!r}")
        if check_robots and self.config.obey_robots and not self._robots_allow(url):
            raise FetchError("robots", f"disallowed by robots.txt for {self.config.user_agent!r}")
        conditional = {}
        if validators is not None and validators.etag:
            conditional["If-None-Match"] = validators.etag
        if validators is not None and validators.last_modified:
            conditional["If-Modified-Since"] = validators.last_modified
        for attempt in range(self.config.retries + 1):
            try:
                return self._follow(url, conditional)
            except FetchError as e:
                if not e.retryable or attempt == self.config.retries:
                    raise
                wait = backoff_delay(attempt, self.config.backoff, e.retry_after, self.jitter())
                if wait > self.config.max_retry_wait:
                    raise FetchError(e.reason, f"{e.detail}; server asks to wait {wait:.0f}s", e.status) from None
                self.sleep(wait)
        raise AssertionError("unreachable")

    def _follow(self, url: str, conditional: dict[str, str] | None = None) -> Response:
        """One attempt: the request and its redirects, within ``timeout`` seconds."""
        assert self.transport is not None, "Fetcher.open() was not called"
        deadline = time.monotonic() + self.config.timeout
        current = url
        for _ in range(self.config.max_redirects + 1):
            hop = self.transport.request(current, max_bytes=self.config.max_bytes, deadline=deadline,
                                         headers=conditional)
            if hop.status == 304 and conditional:
                return Response(current, 304, None, b"", hop.headers)
            if hop.status in (301, 302, 303, 307, 308):
                location = hop.headers.get("location")
                if not location:
                    raise FetchError("http_4xx", f"redirect {hop.status} without Location", hop.status)
                target = resolve_url(current, location)
                if target is None or not is_web_url(target):
                    raise FetchError("bad_url", f"redirect to unusable URL {location!r}")
                current = target
                continue
            if not 200 <= hop.status < 300:
                reason = "http_5xx" if hop.status >= 500 else "http_4xx"
                raise FetchError(reason, f"HTTP {hop.status}", hop.status,
                                 parse_retry_after(hop.headers.get("retry-after"), time.time()))
            return Response(current, hop.status, hop.headers.get("content-type"), hop.body, hop.headers)
        raise FetchError("too_many_redirects", f"more than {self.config.max_redirects} redirects from {url}")

    def _robots_allow(self, url: str) -> bool:
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
        rules = self._robots.get(origin)
        if rules is None:
            rules = self._robots[origin] = self._load_robots(origin)
        return rules.can_fetch(self.config.user_agent, url)

    def _load_robots(self, origin: str) -> RobotFileParser:
        rules = RobotFileParser()
        try:
            lines = self._follow(f"{origin}/robots.txt").body.decode("utf-8", "replace").splitlines()
        except FetchError as e:
            if e.reason in ("private_address", "bad_url"):  # the page itself is refused, whatever robots say
                raise
            lines = [] if e.reason == "http_4xx" else ["User-agent: *", "Disallow: /"]
        rules.parse(lines)
        return rules


def read_local(path: str, max_bytes: int) -> bytes:
    p = Path(urlsplit(path).path if path.startswith("file:") else path)
    try:
        with p.open("rb") as f:
            body = f.read(max_bytes + 1)
    except FileNotFoundError:  # details name no path: the reject's url names the file as the config does
        raise FetchError("not_found", "no such file") from None
    except OSError as e:
        raise FetchError("not_found", f"cannot read the file: {e.strerror or e}") from None
    if len(body) > max_bytes:
        raise FetchError("too_large", f"the file is larger than {max_bytes} bytes")
    return body


def resolve(host: str) -> list[str]:
    """The host's addresses (IPv4 and IPv6), in the resolver's order."""
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except socket.gaierror as e:
        raise FetchError("connection_error", f"cannot resolve {host}: {e}") from None
    return list(dict.fromkeys(str(info[4][0]).split("%")[0] for info in infos))


_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")  # deprecated (RFC 4291): ::a.b.c.d
_NAT64 = ipaddress.ip_network("64:ff9b::/96")  # RFC 6052: 64:ff9b::a.b.c.d reaches a.b.c.d
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")  # RFC 8215: local-use translation


def is_public(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Whether an address is on the public Internet, including the IPv4 address an IPv6 one embeds.

    Python calls ``::127.0.0.1`` and ``64:ff9b::7f00:1`` global; they reach loopback. IPv4-compatible
    addresses are deprecated and refused outright; NAT64 (which IPv6-only networks use to reach IPv4
    sites), IPv4-mapped, 6to4 and Teredo addresses are judged by the IPv4 address they carry.
    """
    if not ip.is_global or ip.is_multicast:
        return False
    if isinstance(ip, ipaddress.IPv4Address):
        return True
    if ip in _IPV4_COMPATIBLE or ip in _NAT64_LOCAL:
        return False
    embedded = [ip.ipv4_mapped, ip.sixtofour, *(ip.teredo or ())]
    if ip in _NAT64:
        embedded.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    return all(is_public(v4) for v4 in embedded if v4 is not None)


def check_address(host: str, allow_private: bool,
                  resolver: Callable[[str], list[str]] = resolve) -> str:
    """The address to connect to; refuses hosts resolving to any non-public address (SSRF), unless allowed."""
    addresses = resolver(host)
    if not addresses:
        raise FetchError("connection_error", f"no address for {host}")
    if not allow_private:
        for address in addresses:
            ip = ipaddress.ip_address(address)
            if not is_public(ip):
                raise FetchError("private_address", f"{host} resolves to non-public address {ip}")
    return addresses[0]


@dataclass
class HttpTransport:
    """HTTP(S) with one connection pool per worker, at most one request per ``host_delay`` to each host.

    Each request connects to the address the SSRF check approved, not to a second DNS answer (DNS
    rebinding): the Host header, TLS SNI and certificate check still use the URL's host name.
    """

    config: FetchConfig
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    resolver: Callable[[str], list[str]] = resolve
    _pool: urllib3.PoolManager | None = field(default=None, init=False, repr=False)
    _headers: dict[str, str] = field(default_factory=dict, init=False, repr=False)
    _last_request: dict[str, float] = field(default_factory=dict, init=False, repr=False)
    _watchdog: _Watchdog | None = field(default=None, init=False, repr=False)

    def _wait_turn(self, host: str) -> float:
        """Sleep until ``host_delay`` has passed since the last request to ``host``; returns the wait."""
        last = self._last_request.get(host)
        wait = 0.0 if last is None else max(0.0, last + self.config.host_delay - self.clock())
        if wait:
            self.sleep(wait)
        self._last_request[host] = self.clock()
        return wait

    def open(self) -> None:
        self._headers = {"User-Agent": self.config.user_agent, "Accept-Encoding": "gzip, deflate"}
        self._watchdog = _Watchdog()
        self._pool = urllib3.PoolManager(retries=False)
        # connections that tell the watchdog which socket a request uses
        watched = {"watchdog": self._watchdog}
        self._pool.pool_classes_by_scheme = {
            "http": type("WatchedPool", (urllib3.HTTPConnectionPool,), {
                "ConnectionCls": type("WatchedConnection", (_Watched, urllib3.connection.HTTPConnection), watched)}),
            "https": type("WatchedPool", (urllib3.HTTPSConnectionPool,), {
                "ConnectionCls": type("WatchedConnection", (_Watched, urllib3.connection.HTTPSConnection), watched)}),
        }

    def close(self) -> None:
        if self._pool is not None:
            self._pool.clear()

    def request(self, url: str, *, max_bytes: int, deadline: float,
                headers: dict[str, str] | None = None) -> Hop:
        watchdog = self._watchdog
        assert self._pool is not None and watchdog is not None, "HttpTransport.open() was not called"
        parts = urlsplit(url)
        host = parts.hostname or ""
        deadline += self._wait_turn(host)  # waiting our turn is not the server being slow
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise FetchError("timeout", f"no time left for {url}")
        within = f"no complete response within {self.config.timeout:g}s"
        watchdog.start(remaining)
        resp = None
        complete = False
        try:
            address = check_address(host, self.config.allow_private_addresses, self.resolver)
            tls = {"server_hostname": host, "assert_hostname": host} if parts.scheme == "https" else None
            pool = self._pool.connection_from_host(address, parts.port, parts.scheme, pool_kwargs=tls)
            resp = pool.urlopen("GET", urlunsplit(("", "", parts.path or "/", parts.query, "")),
                                headers={**self._headers, "Host": parts.netloc.rsplit("@", 1)[-1], **(headers or {})},
                                redirect=False, retries=False, assert_same_host=False, preload_content=False,
                                timeout=urllib3.Timeout(connect=min(self.config.connect_timeout, remaining),
                                                        read=min(self.config.read_timeout, remaining)))
            answer = {k.lower(): v for k, v in resp.headers.items()}
            declared = answer.get("content-length", "")
            if declared.isdigit() and int(declared) > max_bytes:
                raise FetchError("too_large", f"Content-Length {declared} > {max_bytes}")
            decoder = BoundedDecoder(answer.get("content-encoding"), max_bytes)
            while chunk := resp.read1(65536, decode_content=False):
                decoder.feed(chunk)
            if watchdog.fired:  # the socket was shut: what looked like the end was the deadline
                raise FetchError("timeout", within)
            hop = Hop(resp.status, answer, decoder.finish())
            complete = True
            return hop
        except FetchError:
            raise
        except ValueError as e:  # a port out of range, an unparseable address
            raise FetchError("bad_url", f"{url}: {e}") from None
        except urllib3.exceptions.LocationParseError as e:
            raise FetchError("bad_url", str(e)) from None
        except (urllib3.exceptions.HTTPError, OSError, http.client.HTTPException) as e:
            if watchdog.fired:
                raise FetchError("timeout", within) from None
            if isinstance(e, urllib3.exceptions.NewConnectionError):  # a ConnectTimeoutError subclass
                raise FetchError("connection_error", str(e)) from None
            if isinstance(e, urllib3.exceptions.TimeoutError | TimeoutError):
                raise FetchError("timeout", str(e)) from None
            raise FetchError("connection_error", str(e)) from None
        finally:
            watchdog.stop()
            if resp is not None:
                if not complete:  # unread bytes would be the next request's "status line": never pool it
                    resp.close()
                resp.release_conn()


class _Watchdog:
    """Holds one attempt to its deadline over connect, status line, headers and body.

    http.client reads the status line and headers with a timeout per socket read, which a server
    sending a byte at a time never trips. At the deadline the watchdog shuts the request's socket down:
    any read in progress ends at once, and the connection is closed rather than pooled.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None
        self._socket: socket.socket | None = None
        self.fired = False

    def start(self, seconds: float) -> None:
        self.fired, self._socket = False, None
        self._timer = threading.Timer(seconds, self._fire)
        self._timer.daemon = True
        self._timer.start()

    def using(self, sock: socket.socket) -> None:
        """The socket the current request uses (a close-delimited body is read after http.client has let
        go of its connection, so the socket itself is kept)."""
        with self._lock:
            self._socket = sock
            if self.fired:
                self._shut()

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        with self._lock:
            self._socket = None

    def _fire(self) -> None:
        with self._lock:
            self.fired = True
            self._shut()

    def _shut(self) -> None:
        if self._socket is not None:
            with contextlib.suppress(OSError):
                self._socket.shutdown(socket.SHUT_RDWR)


class _Watched:
    """A urllib3 connection that tells its transport's watchdog which socket each request uses."""

    watchdog: _Watchdog
    sock: socket.socket | None

    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()  # type: ignore[misc]
        self.watchdog.using(sock)  # before the TLS handshake, which a server can drip too
        return sock

    def request(self, *args: Any, **kwargs: Any) -> Any:
        if self.sock is not None:  # a pooled connection, already connected
            self.watchdog.using(self.sock)
        return super().request(*args, **kwargs)  # type: ignore[misc]


class BoundedDecoder:
    """Decompresses a body as it streams, never producing more than ``max_bytes`` (gzip bombs).

    Handles the encodings we ask for (gzip, deflate, either zlib-wrapped or raw) and identity; any
    other encoding is refused rather than handed on as garbage.
    """

    def __init__(self, encoding: str | None, max_bytes: int):
        encoding = (encoding or "identity").strip().lower()
        if encoding in ("gzip", "x-gzip"):
            self._inflater: Any = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif encoding == "deflate":
            self._inflater = None  # zlib-wrapped or raw: decided by the first bytes
        elif encoding == "identity":
            self._inflater = None
        else:
            raise FetchError("bad_encoding", f"unsupported Content-Encoding {encoding!r}")
        self._encoding, self._max, self._size = encoding, max_bytes, 0
        self._parts: list[bytes] = []

    def feed(self, chunk: bytes) -> None:
        if self._encoding == "deflate" and self._inflater is None:
            wbits = zlib.MAX_WBITS if chunk[:1] == b"\x78" else -zlib.MAX_WBITS
            self._inflater = zlib.decompressobj(wbits)
        if self._inflater is None:
            self._add(chunk)
            return
        try:
            data = chunk
            while data:
                self._add(self._inflater.decompress(data, self._max - self._size + 1))
                data = self._inflater.unconsumed_tail
        except zlib.error as e:
            raise FetchError("bad_encoding", f"corrupt {self._encoding} body: {e}") from None

    def finish(self) -> bytes:
        if self._inflater is not None:
            self._add(self._inflater.flush())
        return b"".join(self._parts)

    def _add(self, data: bytes) -> None:
        self._size += len(data)
        if self._size > self._max:
            raise FetchError("too_large", f"body larger than {self._max} bytes (decompressed)")
        self._parts.append(data)


_CONTENT_TYPES = {".html": "text/html; charset=utf-8", ".htm": "text/html; charset=utf-8",
                  ".xml": "application/xml", ".json": "application/json", ".txt": "text/plain"}


@dataclass
class ReplayTransport:
    """Serves recorded responses from a TOML manifest (``config.replay_manifest``); URLs not in it answer 404.

    Manifest: ``[[response]]`` tables with ``url`` and optionally ``file`` (body, relative to the
    manifest), ``status`` (default 200), ``content_type`` (default from the file's extension) and
    ``location`` (for redirects).
    """

    manifest: str
    _responses: dict[str, Recorded] = field(default_factory=dict, init=False, repr=False)

    def open(self) -> None:
        self._responses = replay_manifest(self.manifest)

    def close(self) -> None:
        self._responses = {}

    def request(self, url: str, *, max_bytes: int, deadline: float,
                headers: dict[str, str] | None = None) -> Hop:
        item = self._responses.get(url)
        if item is None:
            return Hop(404, {}, b"")
        answer: dict[str, str] = {}  # recorded responses ignore request headers (always a full answer)
        body = b""
        if item.file is not None:
            body = read_local(item.file, max_bytes)
            answer["content-type"] = item.content_type or _CONTENT_TYPES.get(
                Path(item.file).suffix.lower(), "application/octet-stream")
        if item.location is not None:
            answer["location"] = item.location
        return Hop(item.status, answer, body)


def is_html(content_type: str | None) -> bool:
    """Missing content types are given the benefit of the doubt; the extractor decides."""
    if not content_type:
        return True
    mime = content_type.split(";")[0].strip().lower()
    return mime in ("text/html", "application/xhtml+xml") or mime.startswith("text/")


class FetcherDoFn(beam.DoFn):
    """A DoFn that opens its Fetcher (connection pool, replay manifest) once per worker."""

    def __init__(self, fetcher: Fetcher):
        self._fetcher = fetcher

    def setup(self) -> None:
        self._fetcher.open()

    def teardown(self) -> None:
        self._fetcher.close()


def host_shard(entry: FeedEntry, shards: int) -> tuple[str, int]:
    """The politeness key: an entry's host and one of ``shards`` slots, stable across workers."""
    host = (urlsplit(entry.link).hostname or "").lower()
    return host, zlib.crc32(entry.link.encode()) % shards


def in_host_order(keyed: tuple[tuple[str, int], Iterable[FeedEntry]]) -> list[FeedEntry]:
    return sorted(keyed[1], key=lambda e: e.link)


class _FetchPageFn(FetcherDoFn):
    def process(self, entry: FeedEntry):
        now = datetime.now(UTC)
        try:
            resp = self._fetcher.get(entry.link, check_robots=True)
            if not is_html(resp.content_type):
                raise FetchError("not_html", f"content type {resp.content_type}")
        except FetchError as e:
            yield beam.pvalue.TaggedOutput(REJECTS, Reject(entry.link, entry.feed_url, "fetch", e.reason,
                                                           e.detail, now))
            return
        page = Page(entry, resp.final_url, resp.status, resp.content_type, resp.body, now)
        metrics.inc("pages_fetched")
        yield page


class FetchPages(beam.PTransform):
    """FeedEntry -> ``pages`` (Page) and ``rejects`` (Reject, stage ``fetch``).

    Politeness that holds on any number of workers: entries are grouped by (host, shard) with
    ``host_concurrency`` shards per host, so at most that many workers fetch from one host at once, and
    each fetches its share one page at a time, ``host_delay`` apart (the fetch step is fused with the
    grouping's output, as every Beam runner fuses a ParDo chain, so a group's pages are fetched in turn by
    one worker). Each page is its own element for failure handling: one page that breaks the fetcher
    rejects that page, not its host's group.
    """

    def __init__(self, fetcher: Fetcher):
        super().__init__()
        self._fetcher = fetcher

    def expand(self, entries):
        shards = self._fetcher.config.host_concurrency
        keyed = entries | "ByHost" >> Guarded(beam.Map(lambda e: (host_shard(e, shards), e)), "fetch")
        fetched = (
            keyed["main"]
            | "GroupByHost" >> beam.GroupByKey()
            | "InHostOrder" >> beam.FlatMap(in_host_order)
            | "Fetch" >> Guarded(beam.ParDo(_FetchPageFn(self._fetcher)), "fetch", REJECTS, main="pages")
        )
        rejects = (keyed[REJECTS], fetched[REJECTS]) | "AllRejects" >> beam.Flatten()
        return {"pages": fetched["pages"], REJECTS: rejects}
