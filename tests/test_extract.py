from dataclasses import replace
from datetime import UTC, datetime

import apache_beam as beam
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from pipelines.extract import ExtractArticles, ExtractError, _authors, _published, decode, extract_article
from pipelines.records import Page
from pipelines.urls import article_id
from tests.conftest import FIXTURE_ARTICLES, FIXTURES, fixture_url, make_entry, page_for

WEB = FIXTURES / "web"
COMMENT_TEXT = ["my toaster is smarter", "battery life on phones", "Cheers from Leeds"]
CHROME_TEXT = ["We use cookies", "Share on LinkedIn", "Related stories", "Get the Techwire daily briefing",
               "Subscribe to Global Markets Post", "Leave a Comment", "Trending", "All rights reserved"]


def extract(outlet: str, path: str, **entry_kw):
    url = fixture_url(outlet, path)
    host = FIXTURE_ARTICLES.OUTLETS[outlet]["host"]
    return extract_article(page_for(WEB / f"{host}{path}.html", url, **entry_kw))


@pytest.mark.parametrize("outlet, path", [(a[1], a[2]) for a in FIXTURE_ARTICLES.SEEDS] +
                         [(a["outlet"], a["path"]) for a in FIXTURE_ARTICLES.ARTICLES.values()])
def test_body_without_comments_or_page_chrome(outlet, path):
    article = extract(outlet, path)
    assert article.word_count >= 100
    for snippet in COMMENT_TEXT + CHROME_TEXT:
        assert snippet not in article.text, snippet


def test_metadata_from_json_ld_and_canonical():
    a = extract("ledger", "/tech/2025/06/13/meta-scale-ai-investment")
    assert a.title == "Meta bets $14.3 billion on Scale AI and hires its chief executive"
    assert a.authors == ("Priya Raman",)
    assert a.source == "The Daily Ledger"
    assert a.language == "en"
    assert a.canonical_url == fixture_url("ledger", "/tech/2025/06/13/meta-scale-ai-investment")
    assert a.article_id == article_id(a.canonical_url)
    assert a.text.startswith("In a bold step toward reshaping the future of artificial intelligence")


def test_metadata_from_meta_tags_and_language_region():
    a = extract("markets", "/regulation/eu-fines-meta-dma-pay-or-consent")
    assert a.authors == ("Sophie Laurent",)
    assert a.language == "en"
    assert a.published_at == datetime(2025, 6, 11, tzinfo=UTC)
    assert a.source == "marketspost.example"  # no site name on the page: the host stands in


def test_feed_entry_fills_what_the_page_lacks():
    when = datetime(2025, 6, 10, 16, 20, tzinfo=UTC)
    a = extract("bytebeat", "/news/meta-llama-4-1-release", published_at=when, summary="From the feed.",
                author="Feed Author")
    assert a.published_at == when  # the page's date agrees, so the feed's precise time is kept
    assert a.summary == "From the feed."
    assert a.title.startswith("Meta releases Llama 4.1")


def test_page_without_article_text_is_rejected():
    entry = make_entry("https://a.example/x")
    now = datetime(2025, 6, 14, tzinfo=UTC)
    for body in (b"<html><body><nav>Home | News</nav></body></html>", b"", b"\x89PNG\r\n"):
        with pytest.raises(ExtractError) as err:
            extract_article(Page(entry, entry.link, 200, "text/html", body, now))
        assert err.value.reason in ("empty_extraction", "extraction_error")


def test_helpers():
    assert decode("é".encode("latin-1"), "text/html; charset=ISO-8859-1") == "é"
    assert decode(b"abc", "text/html; charset=bogus") == "abc"  # ASCII is valid UTF-8
    assert _authors("By Jane Doe and John Roe; Jane Doe") == ("Jane Doe", "John Roe")
    assert _authors(None) == ()
    entry_time = datetime(2025, 6, 12, 8, 0, tzinfo=UTC)
    assert _published("2025-06-13", entry_time) == datetime(2025, 6, 13, tzinfo=UTC)
    assert _published(None, entry_time) == entry_time
    assert _published("garbage", None) is None


def test_extract_articles_composite():
    good = page_for(WEB / "marketspost.example/deals/microsoft-mistral-stake-funding-round.html",
                    fixture_url("markets", "/deals/microsoft-mistral-stake-funding-round"))
    empty = Page(make_entry("https://a.example/empty"), "https://a.example/empty", 200, "text/html",
                 b"<html><body></body></html>", datetime(2025, 6, 14, tzinfo=UTC))
    with TestPipeline() as p:
        out = p | beam.Create([good, empty]) | ExtractArticles()
        assert_that(out["articles"] | beam.Map(lambda a: a.title), equal_to(
            ["Microsoft takes minority stake in Mistral AI as French start-up raises €2 billion"]), label="ok")
        assert_that(out["rejects"] | beam.Map(lambda r: (r.url, r.stage, r.reason)),
                    equal_to([("https://a.example/empty", "extract", "empty_extraction")]), label="rejects")


def test_years_in_body_text_are_not_taken_for_the_publication_date():
    entry_time = datetime(2025, 6, 13, 12, tzinfo=UTC)
    body = ("<html><body><article><p>" + "The company, founded in 2016 and listed in March 2019, grew fast. " * 8
            + "</p></article></body></html>").encode()
    entry = make_entry("https://a.example/story", published_at=entry_time)
    article = extract_article(Page(entry, entry.link, 200, "text/html", body, entry_time))
    assert article.published_at == entry_time


def test_headline_is_title_not_body_and_short_articles_are_kept():
    body = (b"<html><head><title>Council approves budget</title></head><body><article>"
            b"<h1>Council approves budget</h1><p>The city council approved the 2026 budget on Tuesday "
            b"after a short debate.</p></article></body></html>")
    entry = make_entry("https://a.example/budget")
    article = extract_article(Page(entry, entry.link, 200, "text/html", body, datetime(2025, 6, 14, tzinfo=UTC)))
    assert article.title == "Council approves budget"
    assert article.text.startswith("The city council approved")
    assert article.word_count == 13


@pytest.mark.parametrize("body, content_type, expected", [
    ("Café “quoted”".encode(), "text/html; charset=ISO-8859-1", "Café “quoted”"),  # UTF-8 labelled Latin-1
    (b'<meta charset="koi8-r">' + "Привет".encode("koi8_r"), None, '<meta charset="koi8-r">Привет'),
    (b"<meta http-equiv='Content-Type' content='text/html; charset=shift_jis'>" + "日本".encode("shift_jis"),
     "text/html", "<meta http-equiv='Content-Type' content='text/html; charset=shift_jis'>日本"),
    ("\ufeffCafé".encode("utf-16-le"), "text/html; charset=latin-1", "Café"),  # the BOM wins
])
def test_mislabelled_and_unlabelled_charsets(body, content_type, expected):
    assert decode(body, content_type) == expected


def test_cp1252_page_labelled_utf8_is_extracted_readably():
    text = "The café’s owner said the “new menu” costs €12, and diners agreed it was worth it. " * 3
    body = f"<html><body><article><p>{text}</p></article></body></html>".encode("cp1252")
    entry = make_entry("https://a.example/cafe")
    page = Page(entry, entry.link, 200, "text/html; charset=utf-8", body, datetime(2025, 6, 14, tzinfo=UTC))
    assert "café’s owner said the “new menu” costs €12" in extract_article(page).text


def test_description_image_and_tags():
    a = extract("techwire", "/2025/06/scale-ai-pentagon-thunderforge-contract")
    assert a.description == "The Defense Innovation Unit picked Scale AI to lead the Thunderforge planning programme."
    assert a.image_url == "https://techwire.example/images/scale-ai-pentagon-thunderforge-contract.jpg"
    assert a.tags == ("Artificial intelligence", "Deals")
    b = extract("markets", "/regulation/eu-fines-meta-dma-pay-or-consent")
    assert b.tags == ("Technology", "Regulation", "Big Tech") and b.image_url is None
    assert extract("ledger", "/tech/2025/06/13/meta-scale-ai-investment").tags is None


def test_a_publication_time_after_the_fetch_is_capped_and_the_claim_kept():
    body = "<html><body><article><p>" + "The council met on Tuesday to agree the budget. " * 20 + "</p></article>"
    entry = make_entry("https://news.example/undated", published_at=datetime(2035, 6, 14, 9, tzinfo=UTC))  # 10 years on
    page = Page(entry, entry.link, 200, "text/html", body.encode(), datetime(2025, 6, 14, tzinfo=UTC))
    a = extract_article(page)
    assert a.published_at == page.fetched_at and a.claimed_published_at == datetime(2035, 6, 14, 9, tzinfo=UTC)
    on_time = extract_article(replace(page, entry=replace(page.entry, published_at=datetime(2025, 6, 13, tzinfo=UTC))))
    assert on_time.published_at == datetime(2025, 6, 13, tzinfo=UTC) and on_time.claimed_published_at is None


LEGACY = [  # (text, its legacy charset): pages that browsers would show right only with the right charset
    ("В Москве открылась новая станция метро. Мэр заявил, что строительство заняло три года.", "cp1251"),
    ("Ο δήμαρχος εγκαινίασε τη νέα γέφυρα. Οι κάτοικοι γιόρτασαν μέχρι αργά το βράδυ.", "cp1253"),
    ("עיריית תל אביב הודיעה היום על מדיניות תחבורה חדשה. ראש העיר אמר שהמחירים לא ישתנו.", "cp1255"),
    ("أعلنت حكومة دبي اليوم عن سياسة نقل جديدة. وقال المسؤولون إن الأسعار لن تتغير.", "cp1256"),
    ("東京都は本日、新しい交通政策を発表した。知事はバス料金を据え置くと述べた。", "shift_jis"),
    ("北京市今天宣布了新的交通政策。市长表示公交票价将保持不变。", "gbk"),
    ("서울시는 오늘 새로운 교통 정책을 발표했다. 시장은 버스 요금을 동결한다고 말했다.", "euc-kr"),
    ("กรุงเทพมหานครประกาศนโยบายการจราจรใหม่ในวันนี้ ผู้ว่าราชการกล่าวว่าค่าโดยสารจะไม่เปลี่ยนแปลง", "tis-620"),
    ("Le maire a inauguré la bibliothèque près de l'hôtel de ville; « un événement », a-t-il déclaré.", "cp1252"),
]


@pytest.mark.parametrize("label", ["text/html; charset=utf-8", "text/html; charset=iso-8859-1", "text/html", None])
@pytest.mark.parametrize("text, charset", LEGACY)
def test_legacy_charsets_are_detected_when_the_label_is_wrong_or_missing(text, charset, label):
    body = f"<html><body><article><p>{text * 3}</p></article></body></html>".encode(charset)
    assert text in decode(body, label)


@pytest.mark.parametrize("headline, body", [
    ("Police arrest man after stabbing in central London leaves two injured, officials say",
     "Police arrest man after stabbing in central London leaves two injured, officials say"),  # the body is its
    ("地震造成三人死亡", "地震造成三人死亡。"),  # headline, as briefs are; four words in a script without spaces
    ("Пожар на складе в Москве", "Пожар на складе в Москве потушен."),
])
def test_a_one_sentence_brief_is_an_article_in_every_script(headline, body):
    page = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{headline}</title></head><body><article>"
            f"<h1>{headline}</h1>\n<p>{body}</p>\n</article></body></html>").encode()
    entry = make_entry("https://a.example/brief")
    article = extract_article(Page(entry, entry.link, 200, "text/html", page, datetime(2025, 6, 14, tzinfo=UTC)))
    assert article.text == body and article.title == headline


def test_a_page_with_nothing_but_its_headline_is_empty():
    page = b"<html><head><title>Only a headline</title></head><body><h1>Only a headline</h1></body></html>"
    entry = make_entry("https://a.example/headline")
    with pytest.raises(ExtractError) as err:
        extract_article(Page(entry, entry.link, 200, "text/html", page, datetime(2025, 6, 14, tzinfo=UTC)))
    assert err.value.reason == "empty_extraction"


def test_the_outlet_is_named_by_the_documented_precedence():
    path = "/regulation/eu-fines-meta-dma-pay-or-consent"  # a page without a site name
    assert extract("markets", path, feed_name="Markets Post", feed_title="MP feed").source == "Markets Post"
    assert extract("markets", path, feed_title="Global Markets Post").source == "Global Markets Post"
    assert extract("markets", path).source == "marketspost.example"
    ledger = "/tech/2025/06/13/meta-scale-ai-investment"  # a page with a site name
    assert extract("ledger", ledger, feed_name="Ledger", feed_title="x").source == "Ledger"
    assert extract("ledger", ledger, feed_title="The Ledger's feed").source == "The Daily Ledger"


def test_figures_are_read_from_headline_and_text():
    a = extract("ledger", "/tech/2025/06/13/meta-scale-ai-investment")
    found = {(f.kind, f.value, f.subject) for f in a.figures}
    assert ("money", 14.3e9, "investment") in found and ("percent", 49.0, "stake") in found
    assert a.figures[0].text == "$14.3 billion"  # the headline's comes first
