from pipelines.urls import article_id, canonicalize, host_of, is_web_url, stable_id


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
