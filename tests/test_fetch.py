"""Fetching against replayed responses and against a real HTTP server on 127.0.0.1."""

import gzip
import shutil
import socket
import threading
import time
import zlib
from collections import Counter
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import apache_beam as beam
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from pipelines.config import FetchConfig
from pipelines.fetch import (
    BoundedDecoder,
    Fetcher,
    FetchError,
    FetchPages,
    HttpTransport,
    ReplayTransport,
    check_address,
    is_html,
    parse_retry_after,
)
from pipelines.records import FeedState
from tests.conftest import FIXTURES, fixture_url, make_entry


class Handler(BaseHTTPRequestHandler):
    routes: dict = {}
    hits: Counter = Counter()

    def do_GET(self):  # noqa: N802
        self.hits[self.path] += 1
        if self.path == "/drip":  # a byte every 0.1 s: each read is quick, the whole body is not
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            for _ in range(30):
                self.wfile.write(b"x")
                self.wfile.flush()
                time.sleep(0.1)
            return
        if self.path == "/host":  # echoes the Host header the client sent
            body = self.headers.get("Host", "").encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        if self.path == "/etag" and self.headers.get("If-None-Match") == '"v1"':
            self.send_response(304)
            self.end_headers()
            return
        route = self.routes.get(self.path, (404, {}, b"not found", 0))
        if isinstance(route, list):  # a sequence of answers, one per request, the last repeated
            route = route[min(self.hits[self.path], len(route)) - 1]
        status, headers, body, delay = route
        if delay:
            time.sleep(delay)
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class QuietServer(ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        pass  # clients that stop reading early (size caps, timeouts) are the point of these tests


_SERVER: list[str] = []


def _raw_deflate(data: bytes) -> bytes:
    c = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return c.compress(data) + c.flush()


def server_url() -> str:
    return _SERVER[0]


@pytest.fixture(scope="module", autouse=True)
def server():
    srv = QuietServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{srv.server_address[1]}"
    _SERVER[:] = [base]
    html = b"<html><body><p>hello</p></body></html>"
    Handler.routes = {
        "/ok": (200, {"Content-Type": "text/html"}, html, 0),
        "/gz": (200, {"Content-Type": "text/html", "Content-Encoding": "gzip"}, gzip.compress(html), 0),
        "/hop1": (302, {"Location": "/hop2"}, b"", 0),
        "/hop2": (301, {"Location": f"{base}/ok"}, b"", 0),
        "/loop": (302, {"Location": "/loop"}, b"", 0),
        "/big": (200, {"Content-Type": "text/html"}, b"x" * 5000, 0),
        "/slow": (200, {"Content-Type": "text/html"}, html, 2.0),
        "/boom": (503, {}, b"", 0),
        "/pdf": (200, {"Content-Type": "application/pdf"}, b"%PDF", 0),
        "/bomb": (200, {"Content-Type": "text/html", "Content-Encoding": "gzip"}, gzip.compress(b"\0" * 50_000_000), 0),
        "/deflate": (200, {"Content-Type": "text/html", "Content-Encoding": "deflate"}, zlib.compress(html), 0),
        "/rawdeflate": (200, {"Content-Type": "text/html", "Content-Encoding": "deflate"}, _raw_deflate(html), 0),
        "/brotli": (200, {"Content-Type": "text/html", "Content-Encoding": "br"}, b"\x1b\x00", 0),
        "/corrupt": (200, {"Content-Type": "text/html", "Content-Encoding": "gzip"}, b"\x1f\x8b\x08garbage", 0),
        "/etag": (200, {"Content-Type": "application/rss+xml", "ETag": '"v1"'}, b"<rss/>", 0),
        "/mislabelled": (200, {"Content-Type": "text/html; charset=ISO-8859-1"},
                         ("<html><body><article><p>" + "Der Bürgermeister eröffnete die Brücke über die Straße. " * 4
                          + "</p></article></body></html>").encode(), 0),
        "/flaky": [(500, {}, b"", 0), (200, {"Content-Type": "text/html"}, html, 0)],
        "/busy": [(429, {"Retry-After": "7"}, b"", 0), (200, {"Content-Type": "text/html"}, html, 0)],
        "/overloaded": (429, {"Retry-After": "3600"}, b"", 0),
        "/robots.txt": (200, {"Content-Type": "text/plain"}, b"User-agent: *\nDisallow: /private/\n", 0),
        "/private/page": (200, {"Content-Type": "text/html"}, html, 0),
    }
    yield base
    srv.shutdown()


def fetcher(**kw) -> Fetcher:
    f = Fetcher(FetchConfig(**{"allow_private_addresses": True, "timeout": 5.0, "retries": 0, "host_delay": 0.0,
                               **kw}))
    f.open()
    return f


def reason(fn) -> str:
    with pytest.raises(FetchError) as err:
        fn()
    return err.value.reason


def test_http_ok_gzip_and_redirect_chain(server):
    f = fetcher()
    assert f.get(f"{server}/ok").body.startswith(b"<html>")
    assert f.get(f"{server}/gz").body.startswith(b"<html>")
    resp = f.get(f"{server}/hop1")
    assert resp.final_url == f"{server}/ok" and resp.status == 200


def test_http_failures_map_to_reasons(server):
    f = fetcher(max_bytes=1000)
    assert reason(lambda: f.get(f"{server}/missing")) == "http_4xx"
    assert reason(lambda: f.get(f"{server}/boom")) == "http_5xx"
    assert reason(lambda: f.get(f"{server}/loop")) == "too_many_redirects"
    assert reason(lambda: f.get(f"{server}/big")) == "too_large"
    assert reason(lambda: fetcher(timeout=0.5).get(f"{server}/slow")) == "timeout"
    assert reason(lambda: f.get("ftp://127.0.0.1/x")) == "bad_url"
    assert reason(lambda: f.get("http://127.0.0.1:1/closed")) == "connection_error"


def test_private_addresses_refused_unless_allowed(server):
    f = fetcher(allow_private_addresses=False)
    assert reason(lambda: f.get(f"{server}/ok")) == "private_address"
    with pytest.raises(FetchError, match="private_address"):
        check_address("localhost", allow_private=False)
    check_address("localhost", allow_private=True)


@pytest.mark.parametrize("address, public", [
    ("93.184.215.14", True), ("2606:4700::1111", True), ("64:ff9b::808:808", True),  # NAT64 to a public host
    ("::127.0.0.1", False), ("::8.8.8.8", False),  # IPv4-compatible: deprecated, refused outright
    ("64:ff9b::7f00:1", False), ("64:ff9b::a00:1", False), ("64:ff9b:1::1", False),  # NAT64 to private space
    ("::ffff:127.0.0.1", False), ("2002:7f00:1::1", False), ("::1", False), ("fe80::1", False),
    ("169.254.169.254", False), ("fd00::1", False), ("ff02::1", False),
])
def test_addresses_that_embed_a_private_ipv4_address_are_refused(address, public):
    def resolver(host):
        return [address]
    if public:
        assert check_address("h.example", allow_private=False, resolver=resolver) == address
    else:
        with pytest.raises(FetchError, match="private_address"):
            check_address("h.example", allow_private=False, resolver=resolver)


def test_a_private_page_is_a_private_address_reject_even_when_robots_are_obeyed(server):
    f = fetcher(allow_private_addresses=False, obey_robots=True)
    assert reason(lambda: f.get(f"{server}/ok", check_robots=True)) == "private_address"


def test_private_address_refused_on_redirect_hop(server):
    class PublicFirstHop(HttpTransport):
        """Pretends the first host is public, so the guard must catch the redirect's target."""

        def request(self, url, **kw):
            if url.startswith("http://public.example"):
                from pipelines.fetch import Hop
                return Hop(302, {"location": f"{server}/ok"}, b"")
            return super().request(url, **kw)

    f = Fetcher(FetchConfig(allow_private_addresses=False), transport=PublicFirstHop(FetchConfig()))
    f.open()
    assert reason(lambda: f.get("http://public.example/x")) == "private_address"


def test_replay_transport_serves_manifest_and_404s_the_rest():
    f = Fetcher(FetchConfig(), transport=ReplayTransport(str(FIXTURES / "replay.toml")))
    f.open()
    url = fixture_url("techwire", "/2025/06/meta-invests-billions-in-scale-ai")
    resp = f.get(url)
    assert resp.final_url == url and resp.content_type.startswith("text/html") and b"<article" in resp.body
    assert reason(lambda: f.get(fixture_url("bytebeat", "/news/google-gemini-chrome-agent"))) == "http_4xx"


def test_is_html():
    assert is_html("text/html; charset=utf-8") and is_html(None) and is_html("application/xhtml+xml")
    assert not is_html("application/pdf") and not is_html("image/png")


def test_fetch_pages_composite(server):
    ok, pdf, gone = (make_entry(f"{server}/{p}") for p in ("ok", "pdf", "missing"))
    with TestPipeline() as p:
        polite = Fetcher(FetchConfig(allow_private_addresses=True, host_delay=0.0))
        out = p | beam.Create([ok, pdf, gone]) | FetchPages(polite)
        assert_that(out["pages"] | beam.Map(lambda pg: (pg.entry.link, pg.status)), equal_to([(ok.link, 200)]),
                    label="pages")
        assert_that(out["rejects"] | beam.Map(lambda r: (r.url, r.stage, r.reason)),
                    equal_to([(pdf.link, "fetch", "not_html"), (gone.link, "fetch", "http_4xx")]), label="rejects")


def test_retries_5xx_then_success_with_backoff():
    waits = []
    f = fetcher(retries=2, backoff=0.5)
    f.sleep, f.jitter = waits.append, lambda: 1.0
    assert f.get(f"{server_url()}/flaky").status == 200
    assert waits == [0.5]


def test_429_honours_retry_after_and_gives_up_on_waits_too_long():
    waits = []
    f = fetcher(retries=2, max_retry_wait=60)
    f.sleep = waits.append
    assert f.get(f"{server_url()}/busy").status == 200
    assert waits == [7.0]
    with pytest.raises(FetchError) as err:
        f.get(f"{server_url()}/overloaded")
    assert err.value.status == 429 and "3600" in err.value.detail and waits == [7.0]


def test_retries_are_bounded():
    waits = []
    f = fetcher(retries=2, backoff=0.01)
    f.sleep = waits.append
    with pytest.raises(FetchError, match="http_5xx"):
        f.get(f"{server_url()}/boom")
    assert len(waits) == 2
    assert reason(lambda: fetcher(retries=3).get(f"{server_url()}/missing")) == "http_4xx"  # no retry on 404


def test_parse_retry_after():
    assert parse_retry_after("120", 0) == 120.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", 1445412470.0) == 10.0
    assert parse_retry_after("soon", 0) is None and parse_retry_after(None, 0) is None


def test_robots_disallow_is_obeyed_for_pages_and_cached(server):
    f = fetcher()
    robots_hits = Handler.hits["/robots.txt"]
    assert reason(lambda: f.get(f"{server}/private/page", check_robots=True)) == "robots"
    assert f.get(f"{server}/ok", check_robots=True).status == 200
    assert f.get(f"{server}/private/page").status == 200  # configured feeds do not ask robots.txt
    assert Handler.hits["/robots.txt"] == robots_hits + 1  # once per origin and worker
    assert fetcher(obey_robots=False).get(f"{server}/private/page", check_robots=True).status == 200


def test_unreachable_robots_disallows_missing_robots_allows():
    class Answers(HttpTransport):
        def __init__(self, robots_status):
            super().__init__(FetchConfig())
            self.robots_status = robots_status

        def open(self):
            pass

        def request(self, url, **kw):
            from pipelines.fetch import Hop
            return Hop(self.robots_status if url.endswith("/robots.txt") else 200, {}, b"")

    for status, allowed in ((503, False), (404, True)):
        f = Fetcher(FetchConfig(retries=0), transport=Answers(status))
        f.open()
        if allowed:
            assert f.get("https://site.example/a", check_robots=True).status == 200
        else:
            assert reason(lambda f=f: f.get("https://site.example/a", check_robots=True)) == "robots"


def test_compressed_bodies_are_decoded_within_the_size_cap(server):
    f = fetcher(max_bytes=1_000_000)
    assert f.get(f"{server}/deflate").body.startswith(b"<html>")
    assert f.get(f"{server}/rawdeflate").body.startswith(b"<html>")
    assert reason(lambda: f.get(f"{server}/bomb")) == "too_large"  # 50 MB of zeros in ~50 kB
    assert reason(lambda: f.get(f"{server}/brotli")) == "bad_encoding"
    assert reason(lambda: f.get(f"{server}/corrupt")) == "bad_encoding"


def test_bounded_decoder_never_holds_more_than_the_cap():
    bomb = gzip.compress(b"\0" * 10_000_000)
    decoder = BoundedDecoder("gzip", 100_000)
    with pytest.raises(FetchError, match="too_large"):
        for i in range(0, len(bomb), 4096):
            decoder.feed(bomb[i:i + 4096])
    assert sum(len(p) for p in decoder._parts) <= 100_000


def test_conditional_get_answers_304_with_validators(server):
    f = fetcher()
    first = f.get(f"{server}/etag")
    assert first.status == 200 and first.headers["etag"] == '"v1"'
    again = f.get(f"{server}/etag", validators=FeedState(f"{server}/etag", "hash", etag='"v1"'))
    assert again.status == 304 and again.body == b""
    assert f.get(f"{server}/etag", validators=FeedState(f"{server}/etag", "hash", etag='"v0"')).status == 200


def test_host_delay_spaces_requests_to_one_host(server):
    waits = []
    transport = HttpTransport(FetchConfig(allow_private_addresses=True, host_delay=5.0), sleep=waits.append)
    f = Fetcher(FetchConfig(allow_private_addresses=True, retries=0), transport=transport)
    f.open()
    f.get(f"{server}/ok")
    f.get(f"{server}/ok")
    assert len(waits) == 1 and 4.0 < waits[0] <= 5.0


def test_host_shards_cap_concurrency_per_host():
    from pipelines.fetch import host_shard
    keys = {host_shard(make_entry(f"https://Big.example/{i}"), 2) for i in range(50)}
    assert keys == {("big.example", 0), ("big.example", 1)}
    assert host_shard(make_entry("https://a.example/x"), 3) == host_shard(make_entry("https://a.example/x"), 3)


def test_politeness_wait_does_not_count_against_the_timeout(server):
    # a real 0.3 s wait for the host against a 0.2 s timeout: only the server's time may count
    f = Fetcher(FetchConfig(allow_private_addresses=True, retries=0, timeout=0.2, host_delay=0.3))
    f.open()
    f.get(f"{server}/ok")
    assert f.get(f"{server}/ok").status == 200


def test_read_timeout_and_slow_drip_hit_their_limits(server):
    assert reason(lambda: fetcher(timeout=30.0, read_timeout=0.3).get(f"{server}/slow")) == "timeout"
    started = time.monotonic()
    assert reason(lambda: fetcher(timeout=0.8, read_timeout=5.0).get(f"{server}/drip")) == "timeout"
    assert time.monotonic() - started < 2.5  # stopped at the overall limit, not after the 3 s drip


def test_mislabelled_charset_page_is_fetched_and_extracted_readably(server):
    from pipelines.extract import extract_article
    from pipelines.records import Page

    resp = fetcher().get(f"{server}/mislabelled")
    entry = make_entry(f"{server}/mislabelled")
    article = extract_article(Page(entry, resp.final_url, resp.status, resp.content_type, resp.body,
                                   datetime.now(UTC)))
    assert "Der Bürgermeister eröffnete die Brücke über die Straße." in article.text


def test_connect_timeout():
    import socket

    # a loopback socket that never accepts, its queue filled: further connections hang in the handshake
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        fillers = []
        for _ in range(8):
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", port))
            fillers.append(filler)
        try:
            started = time.monotonic()
            assert reason(lambda: fetcher(connect_timeout=0.5).get(f"http://127.0.0.1:{port}/x")) == "timeout"
            assert time.monotonic() - started < 3
        finally:
            for filler in fillers:
                filler.close()


def test_connection_goes_to_the_checked_address_not_a_second_lookup(server):
    """DNS rebinding: the name is resolved once, checked, and that address is connected to."""
    port = server.rsplit(":", 1)[1]
    lookups = []

    def resolver(host):
        lookups.append(host)
        return ["127.0.0.1"]  # "rebind.example" does not exist for the system resolver

    config = FetchConfig(allow_private_addresses=True, host_delay=0.0, retries=0)
    f = Fetcher(config, transport=HttpTransport(config, resolver=resolver))
    f.open()
    resp = f.get(f"http://rebind.example:{port}/host")
    assert resp.body == f"rebind.example:{port}".encode() and lookups == ["rebind.example"]


def test_any_private_answer_refuses_the_host():
    from pipelines.fetch import check_address
    with pytest.raises(FetchError, match="private_address"):
        check_address("mixed.example", False, lambda h: ["8.8.8.8", "10.0.0.5"])
    assert check_address("public.example", False, lambda h: ["8.8.8.8"]) == "8.8.8.8"  # checked, not connected


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is needed to make a test certificate")
def test_https_to_the_checked_address_verifies_the_host_name(tmp_path, monkeypatch):
    import ssl
    import subprocess

    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost"],
                   check=True, capture_output=True)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # trust the test certificate, through OpenSSL's defaults
    tls_server = QuietServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    tls_server.socket = context.wrap_socket(tls_server.socket, server_side=True)
    threading.Thread(target=tls_server.serve_forever, daemon=True).start()
    try:
        port = tls_server.server_address[1]
        config = FetchConfig(allow_private_addresses=True, host_delay=0.0, retries=0)
        f = Fetcher(config, transport=HttpTransport(config, resolver=lambda host: ["127.0.0.1"]))
        f.open()
        assert f.get(f"https://localhost:{port}/ok").body.startswith(b"<html>")
        with pytest.raises(FetchError, match="doesn't match"):  # same address, a name the certificate lacks
            f.get(f"https://impostor.example:{port}/ok")
    finally:
        tls_server.shutdown()


@pytest.mark.parametrize("url", ["http://[::1/x", "http://" + "a" * 70 + ".example/", "http://user@/x",
                                 "http://.../", "http://example.com:99999/", "gopher://x.example/"])
def test_hostile_urls_are_fetch_errors_not_crashes(url):
    with pytest.raises(FetchError):
        fetcher(allow_private_addresses=False, timeout=2.0).get(url)


class KeepAliveHandler(BaseHTTPRequestHandler):
    """HTTP/1.1 with keep-alive, as real servers answer: connections are reused by the client's pool."""

    protocol_version = "HTTP/1.1"

    def setup(self):
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # no 40 ms stalls per request

    def do_GET(self):  # noqa: N802
        page = b"<html><body><p>healthy</p></body></html>"
        if self.path == "/drip-headers":  # the status line and headers a byte at a time
            head = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nX-Padding: " + b"p" * 200 + b"\r\n"
            for byte in head:
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
                time.sleep(0.05)
            return
        if self.path == "/drip-body":  # headers at once, the body slowly past the deadline, a pause, the rest
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", "1000")
            self.end_headers()
            for _ in range(14):
                self.wfile.write(b"x" * 5)
                self.wfile.flush()
                time.sleep(0.05)
            time.sleep(1.5)  # a client that gave up and pooled the connection reads the rest as a status line
            self.wfile.write(b"x" * 930)
            return
        if self.path == "/big-body":  # over the size cap, with no Content-Length to refuse early
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for _ in range(20):
                self.wfile.write(b"400\r\n" + b"y" * 1024 + b"\r\n")
            self.wfile.write(b"0\r\n\r\n")
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(page)))
        self.end_headers()
        self.wfile.write(page)

    def log_message(self, *args):
        pass


@pytest.fixture
def keepalive_server():
    srv = QuietServer(("127.0.0.1", 0), KeepAliveHandler)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()


@pytest.mark.parametrize("retries", [0, 1])
@pytest.mark.parametrize("path", ["/drip-headers", "/drip-body"])
def test_the_deadline_covers_status_line_headers_and_body(keepalive_server, path, retries):
    f = Fetcher(FetchConfig(allow_private_addresses=True, timeout=0.6, read_timeout=5.0, retries=retries,
                            backoff=0.1, host_delay=0.0))
    f.open()
    started = time.monotonic()
    assert reason(lambda: f.get(f"{keepalive_server}{path}")) == "timeout"
    assert time.monotonic() - started < (retries + 1) * 0.6 + 0.2 * retries + 0.5  # limits, back-off, slack
    started = time.monotonic()  # a healthy page on the same host right after: no leftover bytes, no wait
    assert f.get(f"{keepalive_server}/ok").body == b"<html><body><p>healthy</p></body></html>"
    assert time.monotonic() - started < 0.5


def test_a_response_abandoned_for_its_size_never_returns_to_the_pool(keepalive_server):
    f = Fetcher(FetchConfig(allow_private_addresses=True, max_bytes=4096, retries=0, host_delay=0.0))
    f.open()
    for _ in range(3):
        assert reason(lambda: f.get(f"{keepalive_server}/big-body")) == "too_large"
        assert f.get(f"{keepalive_server}/ok").status == 200


def test_the_deadline_covers_a_dripped_tls_handshake():
    """A server that answers the TLS handshake a byte at a time: each read is quick, the handshake never ends."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)

    def drip():
        conn, _ = listener.accept()
        with conn:
            conn.sendall(b"\x16\x03\x03\x3e\x80")  # a handshake record of 16,000 bytes is coming ...
            for _ in range(60):  # ... slowly
                try:
                    conn.sendall(b"\x00")
                except OSError:
                    return
                time.sleep(0.1)

    threading.Thread(target=drip, daemon=True).start()
    f = Fetcher(FetchConfig(allow_private_addresses=True, timeout=0.5, connect_timeout=5.0, read_timeout=5.0,
                            retries=0, host_delay=0.0))
    f.open()
    started = time.monotonic()
    try:
        assert reason(lambda: f.get(f"https://127.0.0.1:{listener.getsockname()[1]}/")) == "timeout"
        assert time.monotonic() - started < 1.5
    finally:
        listener.close()
