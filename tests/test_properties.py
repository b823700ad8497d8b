"""Property-based tests: whatever a feed or a page contains, parsing never crashes and a run reconciles."""

import json
from dataclasses import replace
from datetime import UTC, datetime
from html import escape

from apache_beam.testing.test_pipeline import TestPipeline
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipelines.config import OutputConfig, load_config
from pipelines.extract import MIN_WORDS, ExtractError, decode, extract_article
from pipelines.feeds import BadFeed, parse_feed
from pipelines.pipeline import build
from pipelines.records import FeedEntry, Page, Run
from pipelines.stories.features import minhash, term_vector
from pipelines.summary import build_summary, counters_of
from pipelines.urls import canonicalize, is_web_url
from pipelines.words import terms, words
from tests.conftest import read_dataset

NOW = datetime(2025, 6, 14, tzinfo=UTC)

# Pieces of hostile text: every script, controls, lone surrogates, character references, markup and noise.
PIECES = [
    "Meta invests $14.3bn", "Мэр Москвы", "Η Ακρόπολη", "دبي تفتتح", "הקו הסגול", "दिल्ली सरकार",
    "กรุงเทพมหานคร", "北京市今天宣布", "京都市は12日", "서울시는", "ꦥꦼꦩꦼꦫꦶꦤ꧀", "😀👍🏽", "e\u0301", "\u200b\u200d",
    "\x00", "\x01\x1f", "\x7f", "\ufffe", "\ud800", "\udc80 tail", "&#xD800;", "&#0;", "&#1114112;", "&amp;",
    "&bogus;", "<b>bold", "</p>", "<![CDATA[", "]]>", "<script>x</script>", "\r\n", "\t", " ", "'", '"', "\\",
]
text = st.lists(st.one_of(st.sampled_from(PIECES), st.text(max_size=20)), max_size=12).map("".join)
CODECS = ["utf-8", "utf-16", "cp1251", "shift_jis", "gbk", "latin-1", "euc-kr", "tis-620"]


def encoded(value: str, codec: str) -> bytes:
    # surrogates go out as they are (invalid UTF-8 / CESU bytes), unencodable characters as '?'
    return value.encode(codec, "surrogatepass" if codec.startswith("utf") else "replace")


@st.composite
def page_bytes(draw) -> tuple[bytes, str | None]:
    title, paragraphs = draw(text), draw(st.lists(text, max_size=6))
    html = (f'<html lang="{draw(st.sampled_from(["en", "ja", "ru", "xx", ""]))}"><head><title>{title}</title>'
            f'<meta charset="{draw(st.sampled_from(CODECS))}"></head><body><article><h1>{title}</h1>'
            + "".join(f"<p>{p}</p>" for p in paragraphs) + "</article></body></html>")
    body = encoded(html, draw(st.sampled_from(CODECS)))
    if draw(st.booleans()):
        body = body[:draw(st.integers(0, len(body)))]  # truncated markup
    label = draw(st.sampled_from([None, "text/html", *(f"text/html; charset={c}" for c in CODECS),
                                  "text/html; charset=bogus"]))
    return body, label


@st.composite
def feed_bytes(draw, links: list[str]) -> bytes:
    kind = draw(st.sampled_from(["rss", "atom", "json", "junk"]))
    if kind == "junk":
        return draw(st.binary(max_size=200))
    items = [(draw(text), link, draw(text)) for link in links]
    if kind == "json":
        doc = {"version": "https://jsonfeed.org/version/1.1", "title": draw(text),
               "items": [{"id": str(i), "url": link, "title": t, "summary": s} for i, (t, link, s) in
                         enumerate(items)]}
        return json.dumps(doc).encode()  # lone surrogates become \\udXXX escapes
    escaped = draw(st.booleans())
    field = (lambda v: escape(v)) if escaped else (lambda v: v)  # unescaped: raw markup, as broken feeds have
    if kind == "rss":
        body = "".join(f"<item><title>{field(t)}</title><link>{escape(link)}</link>"
                       f"<description>{field(s)}</description></item>" for t, link, s in items)
        doc = (f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>t</title>{body}'
               "</channel></rss>")
    else:
        body = "".join(f'<entry><title>{field(t)}</title><link href="{escape(link)}"/><id>{escape(link)}</id>'
                       f"<summary>{field(s)}</summary></entry>" for t, link, s in items)
        doc = f'<?xml version="1.0" encoding="utf-8"?><feed xmlns="http://www.w3.org/2005/Atom">{body}</feed>'
    return encoded(doc, draw(st.sampled_from(["utf-8", "utf-8", "cp1251", "utf-16"])))


@settings(max_examples=300, deadline=None)
@given(body=st.one_of(st.binary(max_size=300), feed_bytes(["https://a.example/1", "https://a.example/2"])))
def test_parsing_a_feed_gives_entries_or_a_bad_feed(body):
    try:
        entries, rejects, _ = parse_feed(body, "https://f.example/rss", NOW)
    except BadFeed:
        return
    for record in (*entries, *rejects):
        for value in vars(record).values():
            if isinstance(value, str):
                value.encode("utf-8")  # storable: no lone surrogates


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(page=page_bytes())
def test_extracting_a_page_gives_an_article_or_an_extract_error(page):
    body, label = page
    decode(body, label)
    entry = FeedEntry("https://f.example/rss", "https://a.example/1")
    try:
        article = extract_article(Page(entry, entry.link, 200, label, body, NOW))
    except ExtractError:
        return
    assert article.word_count >= MIN_WORDS and (article.published_at is None or article.published_at <= NOW)
    term_vector(article.title, article.text, article.language)
    minhash(article.text)


@settings(max_examples=300, deadline=None)
@given(value=text, language=st.sampled_from([None, "en", "ja", "zh", "ko", "ar", "he", "hi", "ru", "th", "xx"]))
def test_text_helpers_never_raise(value, language):
    words(value), terms(value), term_vector(value, value, language), minhash(value)
    is_web_url(value), canonicalize(value), canonicalize(f"https://a.example/{value}")


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                                                  HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_feeds_and_pages_complete_a_run_that_reconciles(tmp_path_factory, data):
    work = tmp_path_factory.mktemp("hostile")
    manifest, feeds = [], []
    for f in range(data.draw(st.integers(1, 3), label="feeds")):
        links = [data.draw(st.sampled_from([f"https://site{f}.example/{i}", f"https://site{f}.example/{i}?x=é",
                                            "mailto:x@y", "", "https://[::1/", "javascript:alert(1)"]))
                 for i in range(data.draw(st.integers(0, 4)))]
        (work / f"feed{f}.xml").write_bytes(data.draw(feed_bytes(links), label="feed"))
        feeds.append(f'[[feeds]]\nurl = "feed{f}.xml"\n')
        for k, link in enumerate(dict.fromkeys(links)):
            if is_web_url(link):
                body, label = data.draw(page_bytes(), label="page")
                (work / f"page{f}-{k}.html").write_bytes(body)
                manifest.append(f'[[response]]\nurl = {json.dumps(link)}\nfile = "page{f}-{k}.html"\n'
                                + (f"content_type = {json.dumps(label)}\n" if label else ""))
    (work / "replay.toml").write_text("\n".join(manifest), "utf-8")
    (work / "c.toml").write_text("".join(feeds) + '[fetch]\nreplay = "replay.toml"\n', "utf-8")
    config = load_config(work / "c.toml")
    config = replace(config, output=OutputConfig(path=str(work / "out")))
    run = Run("20250614T000000Z-hostil", NOW)

    p = TestPipeline()
    build(p, config, run)
    result = p.run()
    result.wait_until_finish()  # the run completes, whatever the input
    summary = build_summary(counters_of(result), run, NOW, config.output.path)

    assert summary["reconciled"], summary
    articles, rejects = read_dataset(work / "out", "articles"), read_dataset(work / "out", "rejects")
    assert articles.num_rows == summary["entries"]["articles_written"]
    entry_rejects = sum(1 for r in rejects.column("feed_url").to_pylist() if r is not None)
    assert entry_rejects == summary["entries"]["rejected"]
    assert summary["feeds"]["polled"] == len(feeds)
