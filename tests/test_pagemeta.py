"""The metadata a page declares: JSON-LD, <meta> tags, elements; precedence and hostile input."""

import json

import pytest
from trafilatura.utils import load_html

from pipelines.pagemeta import MAX_JSON_LD, PageMeta, page_meta


def meta_of(head: str, body: str = "<p>Body text.</p>", html_attrs: str = "",
            url: str = "https://news.example/politics/story") -> PageMeta:
    return page_meta(load_html(f"<!DOCTYPE html><html{html_attrs}><head>{head}</head><body>{body}</body></html>"), url)


def ld(obj) -> str:
    return f'<script type="application/ld+json">{json.dumps(obj)}</script>'


def test_json_ld_article_in_a_graph_wins_over_meta_tags():
    m = meta_of(
        ld({"@context": "https://schema.org", "@graph": [
            {"@type": "WebSite", "name": "The Ledger"},
            {"@type": ["NewsArticle"], "headline": "Council approves budget",
             "author": [{"@type": "Person", "name": "Ada Byron"}, {"@type": "Person", "name": "Ada Byron"}],
             "publisher": {"@type": "Organization", "name": "The Ledger"},
             "image": {"@type": "ImageObject", "url": "https://news.example/i.jpg"},
             "keywords": ["Budget", "city hall"], "articleSection": "Politics",
             "description": "The vote was 7 to 2.", "datePublished": "2025-06-13T08:00:00Z"}]})
        + '<meta property="og:title" content="Other title"><meta name="author" content="Someone Else">')
    assert m.title == "Council approves budget"
    assert m.authors == ("Ada Byron",)
    assert m.site_name == "The Ledger"
    assert m.image == "https://news.example/i.jpg"
    assert m.tags == ("Politics", "Budget", "city hall")
    assert m.description == "The vote was 7 to 2."
    assert m.date == "2025-06-13"


def test_meta_tags_when_there_is_no_json_ld():
    m = meta_of('<meta property="og:title" content="Budget passes | The Ledger">'
                '<meta property="og:site_name" content="The Ledger">'
                '<meta name="byl" content="By Grace Hopper">'
                '<meta property="article:tag" content="Budget"><meta property="article:tag" content="budget">'
                '<meta name="keywords" content="city, council">'
                '<meta property="og:image" content="/img/a.png">'
                '<meta name="description" content="Seven votes to two.">'
                '<meta property="article:published_time" content="2025-06-12T10:00:00+00:00">'
                '<link rel="canonical" href="https://news.example/2025/06/12/budget">',
                html_attrs=' lang="en-GB"')
    assert m.title == "Budget passes"  # the site's name after a separator is not part of the headline
    assert m.site_name == "The Ledger"
    assert m.authors == ("Grace Hopper",)
    assert m.tags == ("Budget", "city", "council")  # de-duplicated case-insensitively, comma lists split
    assert m.image == "/img/a.png"  # resolved against the page URL by the extract stage
    assert m.description == "Seven votes to two."
    assert m.date == "2025-06-12"
    assert m.language == "en"
    assert m.canonical == "https://news.example/2025/06/12/budget"


def test_when_declared_titles_differ_the_one_shown_as_h1_wins():
    head = (ld({"@type": "NewsArticle", "headline": "Budget vote: council approves 2026 spending plan"})
            + '<meta property="og:title" content="Council approves budget after late-night session | The Ledger">'
            + '<meta property="og:site_name" content="The Ledger">')
    assert meta_of(head, "<h1>Council approves budget after late-night session</h1>").title == (
        "Council approves budget after late-night session")
    assert meta_of(head, "<h1>Something else</h1>").title == "Budget vote: council approves 2026 spending plan"


def test_element_fallbacks_and_double_escaped_entities():
    m = meta_of("<title>The Ledger - Harbour reopens after storm</title>",
                '<h1>Harbour reopens</h1><h1>Another</h1><span rel="author">by Alan Turing</span>'
                '<div class="comments"><span rel="author">A reader</span></div>')
    assert m.title == "Harbour reopens after storm"  # two <h1>: the <title>'s longest part
    assert m.authors == ("Alan Turing",)  # the first byline; later ones are comments
    assert meta_of('<meta property="og:title" content="&amp;#8216;Quoted&amp;#8217; headline">').title == (
        "\u2018Quoted\u2019 headline")
    assert meta_of("", "<h1>Only heading</h1><p>x</p>").title == "Only heading"


def test_tags_from_tag_links_only_when_metadata_has_none():
    body = ('<p>Text</p><div class="post-tags">Tags: <a href="/tag/ai">AI</a>, <a href="/tag/deals">Deals</a></div>'
            '<a href="/topics/x" rel="tag">Markets</a><nav><a href="/tag/popular">Popular</a></nav>')
    assert meta_of("", body).tags == ("AI", "Deals", "Markets")  # a /tag/ link outside a tags block is not one
    assert meta_of('<meta name="keywords" content="Budget">', body).tags == ("Budget",)


def test_date_from_the_url_but_never_from_prose():
    assert meta_of("", url="https://news.example/2025/06/13/story").date == "2025-06-13"
    assert meta_of("", "<p>The company was founded on 4 March 2016 in Paris.</p>").date is None


def test_the_declared_canonical_is_read_as_declared_and_a_non_web_one_is_ignored():
    # whether it identifies the article is the extract stage's decision (urls.identifying_url)
    assert meta_of('<link rel="canonical" href="https://news.example/">').canonical == "https://news.example/"
    assert meta_of('<link rel="canonical" href="javascript:alert(1)">').canonical is None
    assert meta_of('<meta property="og:url" content="https://news.example/a/b">').canonical == "https://news.example/a/b"
    assert meta_of('<link rel="canonical" href="/politics/story?id=1">').canonical == \
        "https://news.example/politics/story?id=1"  # relative: resolved against the page's URL


@pytest.mark.parametrize("script", [
    '<script type="application/ld+json">{not json</script>',
    '<script type="application/ld+json">' + "[" * 5000 + "]" * 5000 + "</script>",
    '<script type="application/ld+json">{"@type": "NewsArticle", "headline": 7, "author": {"name": []},'
    ' "image": [null, {"url": 3}], "keywords": {"a": 1}}</script>',
    '<script type="application/ld+json">{"@type": "NewsArticle", "headline": "'
    + "x" * MAX_JSON_LD + '"}</script>',
])
def test_hostile_json_ld_is_ignored_without_raising(script):
    m = meta_of(script + '<meta property="og:title" content="Fallback">')
    assert m.title == "Fallback"
    assert m.authors == () and m.image is None and m.tags == ()


def test_an_empty_page_declares_nothing():
    m = meta_of("")
    assert m.title is None and m.authors == () and m.site_name is None and m.date is None
    assert m.language is None and m.canonical is None and m.tags == ()
