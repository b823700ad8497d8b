import os
import re

import pytest
from apache_beam.io.filesystem import FileSystem
from hypothesis import given
from hypothesis import strategies as st

from pipelines.paths import literal, resolve_output
from pipelines.urls import (
    article_id,
    canonicalize,
    host_of,
    identifying_url,
    is_web_url,
    site_of,
    stable_id,
    valid_web_url,
)


def test_canonicalize_drops_tracking_fragment_default_port_and_sorts_query():
    assert canonicalize("HTTPS://News.Example:443/a/b?utm_source=x&b=2&a=1&fbclid=z#top") == \
        "https://news.example/a/b?a=1&b=2"
    assert canonicalize("http://news.example:80") == "http://news.example/"
    assert canonicalize("https://news.example/p?gclid=1&id=5") == "https://news.example/p?id=5"


def test_tracking_variants_share_one_canonical_url_and_id():
    a = canonicalize("https://news.example/story?utm_medium=feed&utm_campaign=x")
    b = canonicalize("https://news.example/story#comments")
    assert a == b == "https://news.example/story"
    assert article_id(a) == article_id(b)


def test_non_web_strings_are_left_alone():
    assert canonicalize(" /tmp/feed.xml ") == "/tmp/feed.xml"
    assert not is_web_url("ftp://x.example/") and not is_web_url("https://") and is_web_url("http://a.b/")


def test_ids_are_stable_hex_and_kind_separated():
    assert stable_id("article", "x") == stable_id("article", "x")
    assert stable_id("article", "x") != stable_id("story", "x")
    assert len(article_id("https://a.example/")) == 16
    assert host_of("https://WWW.Example.com/x") == "example.com"


PAGE = "https://news.example/a/b0x"


@pytest.mark.parametrize("declared, identifies, why", [
    (None, PAGE, None),
    ("https://news.example/a/b0x", PAGE, None),
    ("https://www.news.example/a/b0x/", "https://www.news.example/a/b0x/", None),  # another host of the site
    ("https://news.example/a/b0", PAGE, "another page of the site"),  # one page claiming another's identity
    ("https://news.example/", PAGE, "another page of the site"),  # a home page
    ("https://other.example/a/b0x", PAGE, "on another site (other.example)"),  # an outlet claiming another's
    ("http://exa mple.com/%20x", PAGE, "not a valid URL"),
    ("https://news.example:999999/a/b0x", PAGE, "not a valid URL"),
    ("https://news.example/a/b0x?" + "x" * 20000, PAGE, "not a valid URL"),
])
def test_a_declared_canonical_identifies_the_page_only_when_it_names_the_same_page_on_its_site(declared, identifies,
                                                                                             why):
    found, ignored = identifying_url(declared, PAGE)
    assert found == identifies
    assert (ignored is None) if why is None else (why in ignored and len(ignored) < 400)


def test_query_parameters_may_be_dropped_never_added_and_sites_may_be_grouped():
    assert identifying_url("https://news.example/a?id=1", "https://news.example/a?id=1&ref=rss")[1] is None
    assert "query parameter" in identifying_url("https://news.example/a?id=2", "https://news.example/a?id=1")[1]
    assert identifying_url("https://news.bbc.co.uk/a", "https://www.bbc.co.uk/a")[1] is None  # public suffixes
    assert "another site" in identifying_url("https://b.github.io/a", "https://a.github.io/a")[1]
    grouped = identifying_url("https://ledger.example.co.uk/a", "https://ledger.example.com/a",
                              same_site=[("example.com", "example.co.uk")])
    assert grouped == ("https://ledger.example.co.uk/a", None)
    assert site_of("http://127.0.0.1:8080/a") == "127.0.0.1" and site_of("https://x.news.example/") == "news.example"


@given(declared=st.one_of(st.text(max_size=60), st.from_regex(r"https?://[a-z.]{1,12}(:\d{1,7})?/[ -~]{0,30}")),
       final=st.from_regex(r"https?://[a-z]{1,8}\.example/[a-z/]{0,20}", fullmatch=True))
def test_identifying_url_never_raises_and_only_trusts_the_same_page_of_the_same_site(declared, final):
    found, ignored = identifying_url(declared, final)
    assert valid_web_url(found) or found == canonicalize(final)
    if found != canonicalize(final):
        assert ignored is None and site_of(found) == site_of(final)
        assert canonicalize(found).split("?")[0].rstrip("/").split("/", 3)[3:] == \
            canonicalize(final).split("?")[0].rstrip("/").split("/", 3)[3:]


@given(path=st.text(alphabet=st.characters(blacklist_characters="\x00/"), min_size=1, max_size=30))
def test_an_output_location_is_matched_literally_whatever_its_characters(path):
    location = f"/out/{path}"
    pattern = re.compile(FileSystem.translate_pattern(f"{literal(location)}/articles/*"))
    assert pattern.match(f"{location}/articles/x.parquet")
    assert not pattern.match(f"/out/{path}x/articles/x.parquet")
    assert resolve_output(location) == os.path.normpath(location) and resolve_output("gs://b/x/") == "gs://b/x"
