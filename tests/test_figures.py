"""Figures from text: pure logic, no Beam."""

from datetime import date

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines.figures import KINDS, QUALIFIERS, Figure, compatible, figures, from_row, subject_key, to_row


def one(text, language="en", reference=None):
    found = figures(text, language, reference)
    assert len(found) == 1, found
    return found[0]


@pytest.mark.parametrize("text,language,value,unit", [
    ("Meta made a $14.3 billion investment", "en", 14.3e9, "USD"),
    ("Meta made a $14.3B investment", "en", 14.3e9, "USD"),
    ("Meta made a US$14,300 million investment", "en", 14.3e9, "USD"),
    ("an investment of 14.3 billion dollars", "en", 14.3e9, "USD"),
    ("Meta investiert 14,3 Mrd. Euro in Scale", "de", 14.3e9, "EUR"),
    ("ein Paket von 3 Billionen Euro", "de", 3e12, "EUR"),  # the long scale
    ("un investissement de 14,3 milliards de dollars", "fr", 14.3e9, "USD"),
    ("Meta投资143亿美元", "zh", 14.3e9, "USD"),
    ("استثمار ١٤٫٣ مليار دولار", "ar", 14.3e9, "USD"),
    ("a ₹500 crore plan", "en", 5e9, "INR"),
    ("€2.5bn in bonds", "en", 2.5e9, "EUR"),
    ("un coste de 1 234,5 euros", "fr", 1234.5, "EUR"),
    ("Kosten von 14.300 Euro", "de", 14300, "EUR"),
    ("costs of 14,300 euros", "en", 14300, "EUR"),
])
def test_money_in_every_convention(text, language, value, unit):
    figure = one(text, language)
    assert figure.kind == "money" and figure.unit == unit
    assert figure.value == pytest.approx(value)


def test_precision_is_the_step_the_number_was_written_to():
    assert one("a $14.3 billion deal").precision == pytest.approx(1e8)
    assert one("a $14 billion deal").precision == pytest.approx(1e9)
    assert one("300 jobs were cut").precision == 100
    assert one("12 people were hurt").precision == 1


@pytest.mark.parametrize("text,language", [
    ("a 49% stake", "en"), ("a 49 percent stake", "en"), ("a 49 per cent stake", "en"),
    ("eine Beteiligung von 49 Prozent", "de"), ("%49 hisse", "tr"), ("٤٩٪ من الأسهم", "ar"), ("４９％の株式", "ja"),
])
def test_percentages(text, language):
    figure = one(text, language)
    assert (figure.kind, figure.value, figure.unit) == ("percent", 49.0, "%")


def test_subjects_are_the_noun_after_else_the_word_before():
    assert one("Meta will acquire a 49% stake in Scale").subject == "stake"
    assert one("a $14.3 billion strategic investment aimed at AI").subject == "investment"
    assert one("Meta is investing $14.8 billion for it").subject == "investing"
    assert one("to generate $2 billion in revenue this year").subject == "revenue"
    assert one("valuing Scale at over $29 billion").subject == "valuing"
    assert one("at least 12 people were killed").subject == "people"


def test_qualifiers():
    assert one("valuing Scale at over $29 billion").qualifier == "over"
    assert one("about 50 experts joined").qualifier == "approx"
    assert one("up to 300 jobs may go").qualifier == "under"
    assert one("exactly 12 people").qualifier is None


def test_counts_need_a_subject_and_skip_years_times_and_names():
    assert one("The company plans to hire 50 experts").value == 50
    assert one("two people were hurt").value == 2
    assert figures("Wang founded Scale in 2016 after MIT", "en") == ()
    assert figures("The meeting starts at 10:30 today", "en") == ()
    assert figures("after the Llama 4 model disappointed", "en") == ()
    assert figures("one of the most significant deals", "en") == ()


def test_dates_take_the_articles_year_when_not_written():
    assert one("It was announced on June 12, 2025 in a statement").day == date(2025, 6, 12)
    assert one("announced on 12 juin", "fr", date(2025, 7, 1)).day == date(2025, 6, 12)
    assert one("filed on 2025-06-12 with regulators").day == date(2025, 6, 12)
    assert figures("announced on June 12", "en") == ()  # no year anywhere: no date


def test_compatible_within_rounding_only():
    b143, b148, b14 = (one(f"a ${v} billion investment") for v in ("14.3", "14.8", "14"))
    assert compatible(b143, b14) and not compatible(b143, b148)
    assert compatible(one("more than $14 billion in cash"), b148)


def test_subject_key_folds_english_derivations():
    assert subject_key("investment") == subject_key("investing") == subject_key("invested") == "invest"
    assert subject_key("valuation") == subject_key("values") == subject_key("valued") == "valu"
    assert subject_key("stakes") == subject_key("stake")
    assert subject_key("Menschen") == "menschen"


def test_rows_round_trip():
    for figure in figures("On June 12, 2025 Meta paid $14.3 billion for a 49% stake; 50 experts", "en"):
        assert from_row(to_row(figure)) == figure


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=400), st.sampled_from(["en", "de", "fr", "zh", "ar",
                                                                                       "hi", "ru", None, "x"]))
def test_any_text_gives_well_formed_figures(text, language):
    for f in figures(text, language, date(2025, 1, 1)):
        assert isinstance(f, Figure) and f.kind in KINDS and f.qualifier in (None, *QUALIFIERS)
        assert f.text and f.text in text and f.precision > 0
        assert (f.day is not None) == (f.kind == "date") and (f.value is None) == (f.kind == "date")
        assert f.value is None or f.value == f.value  # not NaN
        lo, hi = f.bounds()
        assert lo <= hi


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 10**12), st.integers(0, 99), st.sampled_from(["en", "de", "fr"]),
       st.sampled_from(["$", "€", "£"]))
def test_written_amounts_read_back(whole, cents, language, sign):
    grouping, decimal = {"en": (",", "."), "de": (".", ","), "fr": ("\u202f", ",")}[language]
    written = f"{whole:,}".replace(",", grouping) + f"{decimal}{cents:02d}"
    figure = one(f"a payment of {sign}{written} to them", language)
    assert figure.kind == "money" and figure.value == pytest.approx(whole + cents / 100)


def test_a_range_is_one_figure_compatible_with_the_values_inside_it():
    (r,) = figures("offers worth between $140 million and $150 million", "en")
    assert (r.value, r.text) == (145e6, "$140 million and $150 million")
    assert compatible(r, one("a $148 million offer")) and not compatible(r, one("a $184 million offer"))


def test_a_rate_has_its_own_unit():
    assert one("a deal worth $23 million per season").unit == "USD/season"
    assert one("he earns $5 million annually").unit == "USD/year"
    assert one("it paid $4 million a year ago").unit == "USD"  # "a year ago" is no rate


def test_ages_times_and_addresses_are_not_counts():
    assert figures("the 36-year-old champion won", "en") == ()
    assert figures("they met at 10 a.m. on the pier", "en") == ()
    assert figures("he lived near 473 East 52nd Street", "en") == ()
    assert one("a 30-day reprieve").subject == "day"


def test_number_words_with_multipliers_and_vague_amounts():
    assert one("at least four dozen questions").value == 48
    assert figures("a few hundred asylum seekers", "en") == ()
    assert figures("more than three quarters of applicants", "en") == ()


@pytest.mark.parametrize("text,language,expected", [
    ("2025年6月12日に発表した", "ja", ("date", date(2025, 6, 12))),
    ("오는 6월 28일부터 인상", "ko", ("date", date(2025, 6, 28))),
    ("总投资73亿欧元", "zh", ("money", 7.3e9, "EUR", "投资")),
    ("投資額は約73億ユーロ", "ja", ("money", 7.3e9, "EUR", "投資")),
    ("기본요금 1550원으로 오른다", "ko", ("money", 1550.0, "KRW", "기본요금")),
    ("بتكلفة 18 مليار درهم", "ar", ("money", 18e9, "AED", "بتكلفة")),
    ("מחיר של 16 שקלים", "he", ("money", 16.0, "ILS", "מחיר")),
])
def test_figures_in_spaceless_and_right_to_left_scripts(text, language, expected):
    figure = one(text, language, date(2025, 1, 1))
    if expected[0] == "date":
        assert (figure.kind, figure.day) == expected
    else:
        assert (figure.kind, figure.value, figure.unit, figure.subject) == expected


@pytest.mark.parametrize("text,language", [
    ("13日午前4時12分ごろ", "ja"), ("3月に決定", "ja"), ("в 11 утра", "ru"), ("στις 12 μεσημέρι", "el"),
])
def test_times_and_parts_of_dates_are_not_counts(text, language):
    assert figures(text, language) == ()


def test_a_qualifier_is_the_words_right_before_the_figure():
    assert one("but above the 2002 value of $4.9 million").qualifier is None
    assert one("the value rose above $4.9 million").qualifier == "over"


def test_pounds_of_weight_and_dollars_of_a_year_are_not_money():
    assert one("weighing approximately 200 pounds").kind == "count"
    assert one("a 2 billion pound deal").unit == "GBP"
    assert figures("$76 million (in 2006 dollars) was spent", "en")[0].value == 76e6
    assert len(figures("$76 million (in 2006 dollars) was spent", "en")) == 1
