"""Fetching against replayed responses and against a real HTTP server on 127.0.0.1."""

import gzip
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import apache_beam as beam
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from pipelines.config import FetchConfig
from pipelines.fetch import Fetcher, FetchError, FetchPages, HttpTransport, ReplayTransport, check_address, is_html
from tests.conftest import FIXTURES, fixture_url, make_entry


class Handler(BaseHTTPRequestHandler):
    routes: dict = {}

    def do_GET(self):  # noqa: N802
        status, headers, body, delay = self.routes.get(self.path, (404, {}, b"not found", 0))
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


@pytest.fixture(scope="module")
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{srv.server_address[1]}"
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
    }
    yield base
    srv.shutdown()


def fetcher(**kw) -> Fetcher:
    f = Fetcher(FetchConfig(**{"allow_private_addresses": True, "timeout": 5.0, **kw}))
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
        out = p | beam.Create([ok, pdf, gone]) | FetchPages(Fetcher(FetchConfig(allow_private_addresses=True)))
        assert_that(out.pages | beam.Map(lambda pg: (pg.entry.link, pg.status)), equal_to([(ok.link, 200)]),
                    label="pages")
        assert_that(out.rejects | beam.Map(lambda r: (r.url, r.stage, r.reason)),
                    equal_to([(pdf.link, "fetch", "not_html"), (gone.link, "fetch", "http_4xx")]), label="rejects")
