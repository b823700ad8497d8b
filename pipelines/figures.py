"""Article text -> the figures it states: money, percentages, counts and dates, normalised, each with the word
for what it measures.

A figure is found from its number, in any script's decimal digits (``float`` reads them all), read with the
grouping and decimal conventions of the article's language ("14,3" is 14.3 in German, "14,300" is 14300 in
English, "14 300" with a thin or no-break space is 14300 everywhere), then what stands around it:

- money: a currency sign or code before it, or a currency word after it, with an optional scale
  ("$14.3 billion", "$14.3B", "US$14,300 million", "14,3 Mrd. Euro", "14.3亿美元" are all USD or EUR or CNY
  amounts in units of the currency);
- percent: a percent sign or word ("49%", "49 percent", "49 Prozent", "%49");
- count: a number (or an English number word) with a noun after it or a word before it ("50 experts", "killed
  12");
- date: a day and month, with the year written or taken from the article's own date ("June 12, 2025",
  "12 juin", "2025-06-12").

``precision`` is the step the number was written to ("$14.3 billion": 0.1 billion; "300": 100), so figures can be
compared "beyond rounding"; ``qualifier`` records "about", "more than", "up to" and their equivalents. The
``subject`` is one word: the noun right after the figure ("a 49% stake", "$14.3 billion strategic investment"),
else the nearest content word before it in the same clause ("investing $14.8 billion"); ``subject_key``
folds English inflections and derivations so "investing", "invested" and "investment" compare equal.

Everything here is pure and total: any text gives a (possibly empty) tuple, never an exception.
"""

from __future__ import annotations

import dataclasses
import math
import unicodedata
from dataclasses import dataclass
from datetime import date, datetime

import regex

MAX_FIGURES = 60  # per article, in order of appearance: bounds rows and the story index
MAX_TEXT = 2_000_000  # characters read; extraction bounds pages far below this anyway

MONEY, PERCENT, COUNT, DATE = "money", "percent", "count", "date"
KINDS = (MONEY, PERCENT, COUNT, DATE)
QUALIFIERS = ("approx", "over", "under")


@dataclass(frozen=True)
class Figure:
    kind: str
    value: float | None  # money in units of its currency, percent in points, a count; None for a date
    unit: str | None  # ISO 4217 currency code for money, "%" for percent; None otherwise
    subject: str | None  # the word for what it measures, lower-case
    text: str  # the figure as written
    precision: float  # the step it was written to (1.0 for a date: one day)
    qualifier: str | None = None  # "approx", "over" (more than, at least) or "under" (less than, up to)
    day: date | None = None  # a date's day

    @property
    def subject_key(self) -> str | None:
        return subject_key(self.subject)

    def bounds(self) -> tuple[float, float]:
        """The values the figure is consistent with: its rounding interval, widened by its qualifier."""
        x = float(self.day.toordinal()) if self.day is not None else (self.value or 0.0)
        half = self.precision / 2
        if self.qualifier == "over":
            return x - half, math.inf
        if self.qualifier == "under":
            return -math.inf, x + half
        if self.qualifier == "approx":
            half = max(half, abs(x) * 0.1 if self.day is None else 3.0)
        return x - half, x + half


def compatible(a: Figure, b: Figure) -> bool:
    """Whether two figures of one kind and unit can state the same quantity, within rounding."""
    (lo1, hi1), (lo2, hi2) = a.bounds(), b.bounds()
    return lo1 <= hi2 and lo2 <= hi1


# --- vocabulary -----------------------------------------------------------------------------------------

_SCALES = {
    "thousand": 1e3, "thousands": 1e3, "k": 1e3, "million": 1e6, "millions": 1e6, "mn": 1e6, "mln": 1e6,
    "m": 1e6, "mm": 1e6, "billion": 1e9, "billions": 1e9, "bn": 1e9, "b": 1e9, "bln": 1e9, "trillion": 1e12,
    "tn": 1e12, "trn": 1e12, "lakh": 1e5, "lakhs": 1e5, "crore": 1e7, "crores": 1e7,
    # German, Dutch, French, Spanish, Italian, Portuguese, Polish, Turkish
    "tausend": 1e3, "mio": 1e6, "millionen": 1e6, "mrd": 1e9, "milliarde": 1e9, "milliarden": 1e9,
    "billionen": 1e12, "miljoen": 1e6, "miljard": 1e9, "miljarden": 1e9, "milliard": 1e9, "milliards": 1e9,
    "millón": 1e6, "millones": 1e6, "billón": 1e12, "billones": 1e12, "milione": 1e6, "milioni": 1e6,
    "miliardo": 1e9, "miliardi": 1e9, "milhão": 1e6, "milhões": 1e6, "bilhão": 1e9, "bilhões": 1e9,
    "bilião": 1e12, "mil": 1e3, "mila": 1e3, "mille": 1e3, "tys": 1e3, "mld": 1e9, "miliard": 1e9,
    "miliardów": 1e9, "miliardy": 1e9, "milionów": 1e6, "miliony": 1e6, "milyon": 1e6, "milyar": 1e9,
    # Russian, Ukrainian, Arabic, Hindi
    "тыс": 1e3, "тысяч": 1e3, "тысячи": 1e3, "тысяча": 1e3, "млн": 1e6, "миллион": 1e6, "миллиона": 1e6,
    "миллионов": 1e6, "млрд": 1e9, "миллиард": 1e9, "миллиарда": 1e9, "миллиардов": 1e9, "трлн": 1e12,
    "мільйонів": 1e6, "мільярдів": 1e9, "ألف": 1e3, "مليون": 1e6, "ملايين": 1e6, "مليار": 1e9,
    "مليارات": 1e9, "हज़ार": 1e3, "हजार": 1e3, "लाख": 1e5, "करोड़": 1e7, "करोड": 1e7,
    # written attached to the number in Chinese, Japanese and Korean
    "千": 1e3, "万": 1e4, "萬": 1e4, "亿": 1e8, "億": 1e8, "兆": 1e12, "천": 1e3, "만": 1e4, "억": 1e8, "조": 1e12,
}
# "billion" is 10^12 in the long-scale languages
_LONG_SCALE = frozenset({"de", "fr", "nl", "es", "it", "pl", "sv", "da", "no", "nb", "fi", "cs", "sk", "hu", "pt"})
_ATTACHED_ONLY = frozenset({"k", "m", "b", "mm"})  # "$14.3B" but not "14 b..."; only after a currency

_SIGNS = {
    "us$": "USD", "u.s.$": "USD", "$": "USD", "a$": "AUD", "au$": "AUD", "c$": "CAD", "ca$": "CAD",
    "hk$": "HKD", "nz$": "NZD", "s$": "SGD", "r$": "BRL", "mx$": "MXN", "€": "EUR", "£": "GBP", "¥": "JPY",
    "₹": "INR", "₽": "RUB", "₩": "KRW", "₺": "TRY", "₪": "ILS", "₫": "VND", "₦": "NGN", "₴": "UAH", "฿": "THB",
    "rs": "INR", "rs.": "INR", "chf": "CHF", "fr.": "CHF", "rmb": "CNY", "zł": "PLN",
}
_CODES = ("USD", "EUR", "GBP", "JPY", "CNY", "INR", "RUB", "KRW", "CHF", "CAD", "AUD", "HKD", "BRL", "MXN",
          "TRY", "ILS", "SEK", "NOK", "DKK", "PLN", "ZAR", "SGD", "NZD", "UAH", "THB", "NGN", "VND")
_CURRENCY_WORDS = {
    "dollar": "USD", "dollars": "USD", "usd": "USD", "euro": "EUR", "euros": "EUR", "eur": "EUR",
    "pound": "GBP", "pounds": "GBP", "sterling": "GBP", "gbp": "GBP", "yen": "JPY", "jpy": "JPY", "yuan": "CNY",
    "renminbi": "CNY", "cny": "CNY", "rupee": "INR", "rupees": "INR", "inr": "INR", "rouble": "RUB",
    "roubles": "RUB", "ruble": "RUB", "rubles": "RUB", "won": "KRW", "francs": "CHF", "franken": "CHF",
    "dólares": "USD", "dólar": "USD", "dollari": "USD", "dollaro": "USD", "dólares.": "USD", "reais": "BRL",
    "złotych": "PLN", "zł": "PLN", "lira": "TRY", "liras": "TRY", "долларов": "USD", "доллара": "USD",
    "доллар": "USD", "евро": "EUR", "рублей": "RUB", "рубля": "RUB", "руб": "RUB", "гривен": "UAH",
    "دولار": "USD", "يورو": "EUR", "रुपये": "INR", "रुपए": "INR", "درهم": "AED", "دراهم": "AED", "ريال": "SAR",
    "جنيه": "EGP", "שקלים": "ILS", "שקל": "ILS", "ש\"ח": "ILS", "ευρώ": "EUR", "δολάρια": "USD", "บาท": "THB",
    "kronor": "SEK", "ringgit": "MYR", "rupiah": "IDR",
    "美元": "USD", "美金": "USD", "欧元": "EUR", "英镑": "GBP", "日元": "JPY", "元": "CNY", "人民币": "CNY",
    "円": "JPY", "ドル": "USD", "ユーロ": "EUR", "달러": "USD", "원": "KRW", "유로": "EUR",
}
for _code in _CODES:
    _CURRENCY_WORDS.setdefault(_code.lower(), _code)
    _SIGNS.setdefault(_code.lower(), _code)

_PERCENT_WORDS = ("per cent", "percent", "pct", "prozent", "pour cent", "por ciento", "por cento",
                  "per cento", "procent", "procentów", "процента", "процентов", "процент", "відсотків",
                  "prosent", "prosentti", "százalék", "yüzde")

_QUALIFIER_WORDS = {
    "approx": ("about", "around", "roughly", "approximately", "nearly", "almost", "some", "estimated", "circa",
               "ca.", "c.", "etwa", "rund", "fast", "knapp", "ungefähr", "environ", "près de", "presque",
               "alrededor de", "cerca de", "casi", "unos", "unas", "circa", "quasi", "cerca di", "около",
               "почти", "примерно", "约", "近", "大约", "約", "およそ", "약", "~"),
    "over": ("more than", "over", "at least", "upwards of", "in excess of", "exceeds", "exceeding", "exceeded",
             "above", "mehr als", "über", "mindestens", "plus de", "au moins", "más de", "al menos",
             "oltre", "più di", "mais de", "более", "свыше", "больше", "超过", "逾", "以上", "이상"),
    "under": ("less than", "fewer than", "under", "up to", "below", "at most", "weniger als", "bis zu",
              "moins de", "jusqu'à", "menos de", "hasta", "meno di", "até", "менее", "до", "不到", "未満"),
}

_NUMBER_WORDS = {
    "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9,
    "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15, "sixteen": 16,
    "seventeen": 17, "eighteen": 18, "nineteen": 19, "twenty": 20, "thirty": 30, "forty": 40, "fifty": 50,
    "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90, "hundred": 100, "dozen": 12,
}

_MONTHS: dict[str, int] = {}
for _names in (
    "january february march april may june july august september october november december",
    "jan feb mar apr may jun jul aug sep oct nov dec",
    "januar februar märz april mai juni juli august september oktober november dezember",
    "janvier février mars avril mai juin juillet août septembre octobre novembre décembre",
    "enero febrero marzo abril mayo junio julio agosto septiembre octubre noviembre diciembre",
    "gennaio febbraio marzo aprile maggio giugno luglio agosto settembre ottobre novembre dicembre",
    "janeiro fevereiro março abril maio junho julho agosto setembro outubro novembro dezembro",
    "januari februari maart april mei juni juli augustus september oktober november december",
):
    for _i, _name in enumerate(_names.split(), 1):
        _MONTHS.setdefault(_name, _i)
_MONTHS["sept"] = 9

# Words that are never what a figure measures: function words of the languages above, and calendar words.
_STOP = frozenset("""
a an the and or but of to in on at by for with from as is are was were be been being it its this that these
those he she they we you his her their our your its which who whom whose when where while than then there
has have had do does did will would could should may might must can into about over after before under up
down out off per each every all some any no not so such also just only more most less few other own same
said says say told according reported reportedly nearly almost around roughly approximately least some
now new year years month months week weeks day days time times percent cent million billion trillion between
among
der die das den dem des ein eine einen einem einer und oder mit von zu im am um für auf aus bei nach über
le la les un une des du de et ou en au aux pour par sur avec dans el los las del y con por para una unos
il lo gli di da con per su tra fra e o um uma os as do da em no na com
""".split())
_CONNECTORS = frozenset({"of", "in"})  # "$2 billion in revenue", "4.3% of its researchers"
_DETERMINERS = frozenset({"a", "an", "the", "its", "their", "his", "her", "our", "this", "that", "these",
                          "those", "top", "all"})
_COMMA_DECIMAL = frozenset({
    "de", "fr", "es", "it", "pt", "nl", "ru", "uk", "pl", "cs", "sk", "tr", "sv", "da", "no", "nb", "fi", "hu",
    "ro", "bg", "hr", "sr", "sl", "el", "id", "vi", "lt", "lv", "et", "ca", "gl", "eu", "az", "kk", "be",
})
_SPACE_GROUPING = frozenset({"fr", "ru", "uk", "pl", "cs", "sk", "sv", "no", "nb", "fi", "et", "lt", "lv",
                             "hu", "bg", "be", "kk"})
_CAPITALISED_NOUNS = frozenset({"de", "lb"})  # languages where a capital letter does not mark a name

_WORD = regex.compile(r"[\p{L}\p{M}][\p{L}\p{M}'’\-]*")
_TOKEN = regex.compile(r"[\p{L}\p{M}][\p{L}\p{M}'’\-]*|\d+")
_CLAUSE_END = regex.compile(r"[.;:!?()\[\]{}\"“”«»،؛。；：！？\n]|,\s|—|–\s")
_LAST_CLAUSE_END = regex.compile(r"(?r)" + _CLAUSE_END.pattern)  # searched from the end: the last one
_CJK = r"\p{Han}\p{Hiragana}\p{Katakana}\p{Hangul}"
_NOT_CJK_LETTER = r"[^\P{L}" + _CJK + "]"  # a letter of a script that puts spaces between words
_NUM = (r"(?<!" + _NOT_CJK_LETTER + r"|[\p{N}.,])"
        r"(?:\d{1,3}(?:(?P<g>[,.\u00a0\u202f\u2009'’ \u066c])\d{3})(?:(?P=g)\d{3})*(?:[.,\u066b]\d+)?"
        r"|\d+(?:[.,\u066b]\d+)?)")
_ISO_DATE = regex.compile(r"(?<!\d)(\d{4})-(\d{2})-(\d{2})(?!\d)")
_MONTH_WORD = (r"(?P<month>(?i:" + "|".join(regex.escape(m) for m in sorted(_MONTHS, key=len, reverse=True))
               + r"))\.?")
_DAY = regex.compile(r"(?<![\p{N}\p{L}.,])\d{1,2}(?![\p{N}])")
_AFTER_DAY = regex.compile(r"(?:\.|er|º|st|nd|rd|th)?\s+(?:de\s+)?" + _MONTH_WORD +
                           r"(?:,?\s+(?:de\s+)?(?P<year>\d{4}))?(?![\p{L}])")
_BEFORE_DAY = regex.compile(r"(?r)(?<![\p{L}])" + _MONTH_WORD + r"\s+$")  # (?r): searched from the end
_YEAR_AFTER = regex.compile(r"(?:st|nd|rd|th)?,?\s+(?P<year>\d{4})(?![\p{N}\p{L}])")


def _alternation(words) -> str:
    return "|".join(regex.escape(w) for w in sorted(words, key=len, reverse=True))


_PRE = regex.compile(r"(?r)(?i:(?P<sign>" + _alternation(_SIGNS) + r"))\s?$")
_PRE_PERCENT = regex.compile(r"[%٪％]$")
_POST = regex.compile(
    r"(?P<space>[\s\u00a0\u202f]?)(?i:(?P<scale>" + _alternation(_SCALES) + r")"
    r"(?:(?<=mrd|mio|mln|mld|tys|тыс|млн|млрд|трлн)\.)?"
    r"(?!" + _NOT_CJK_LETTER + r"))?\s?(?:(?i:de|di|d')\s?(?=\p{L}))?"
    r"(?:(?P<percent>[%٪％]|(?i:" + _alternation(_PERCENT_WORDS) + r")(?![\p{L}]))"
    r"|(?i:(?P<currency>" + _alternation(_CURRENCY_WORDS) + r"))(?!" + _NOT_CJK_LETTER + r"))?")
_NUMBER = regex.compile(_NUM)
_NUMBER_WORD = regex.compile(r"(?i)(?<![\p{L}\-])(?:" + _alternation(_NUMBER_WORDS) + r")(?![\p{L}\-])")


def figures(text: str | None, language: str | None = None, reference: date | None = None) -> tuple[Figure, ...]:
    """The figures ``text`` states, in order of appearance (at most ``MAX_FIGURES``). ``language`` (ISO 639-1)
    chooses the decimal convention; ``reference`` (the article's date) gives a year to dates written without."""
    if not text:
        return ()
    try:
        return _figures(text[:MAX_TEXT], (language or "en").lower()[:2], reference)
    except Exception:  # noqa: BLE001 - untrusted text must never fail an article; the fuzz tests look for these
        return ()


def _figures(text: str, language: str, reference: date | None) -> tuple[Figure, ...]:
    found: list[tuple[int, Figure]] = []
    taken: list[tuple[int, int]] = []
    for start, end, day in _dates(text, reference):
        found.append((start, Figure(DATE, None, None, _subject(text, start, end, language, after=False),
                                    text[start:end], 1.0, _qualifier(text, start), day)))
        taken.append((start, end))
    for match in _NUMBER.finditer(text):
        if any(s <= match.start() < e for s, e in taken):
            continue
        placed = _number_figure(text, match, language)
        if placed is not None:
            found.append(placed)
    if language == "en" or language not in _COMMA_DECIMAL:
        for match in _number_words(text):
            if any(s <= match.start() < e for s, e in taken):
                continue
            figure = _word_count(text, match, language)
            if figure is not None:
                found.append((match.start(), figure))
    found.sort(key=lambda item: item[0])
    return tuple(_ranges(text, found[:MAX_FIGURES]))


_RANGE = regex.compile(r"\s*(?:to|and|or|-|–|—|bis|und|à|et|a|y|e|до|и|至|〜|~)\s*", regex.IGNORECASE)


def _ranges(text: str, found: list[tuple[int, Figure]]) -> list[Figure]:
    """A range ("between $140 million and $150 million", "12 to 15 people") is one figure: its midpoint, with
    the range's width as its precision, so it is compatible with exactly the values inside it."""
    figures: list[Figure] = []
    k = 0
    while k < len(found):
        (s1, low), nxt = found[k], found[k + 1] if k + 1 < len(found) else None
        if nxt is not None and (low.kind, low.unit) == (nxt[1].kind, nxt[1].unit) and low.kind != DATE and \
                low.value is not None and nxt[1].value is not None and low.value < nxt[1].value and \
                _RANGE.fullmatch(text, s1 + len(low.text), nxt[0]):
            high = nxt[1]
            assert low.value is not None and high.value is not None
            figures.append(dataclasses.replace(
                high, value=(low.value + high.value) / 2, text=text[s1:nxt[0] + len(high.text)],
                precision=high.value - low.value + max(low.precision, high.precision),
                subject=high.subject or low.subject, qualifier=low.qualifier))
            k += 2
        else:
            figures.append(low)
            k += 1
    return figures


_CJK_DATE = regex.compile(r"(?:(?P<year>\d{4})\s*[年년]\s*)?(?P<month>\d{1,2})\s*[月월]\s*(?P<day>\d{1,2})\s*[日일]")


def _number_words(text: str):
    """The English number words of ``text``, as matches: found by plain substring search in its lower-case
    form (a regular expression trying each position costs a third of a millisecond a page)."""
    lowered = text.lower()
    if len(lowered) != len(text):  # lower-casing changed lengths (a dotted capital I): positions would shift
        yield from _NUMBER_WORD.finditer(text)
        return
    starts = sorted(i for word in _NUMBER_WORDS for i in _occurrences(lowered, word)
                    if not lowered[i - 1:i].isalpha() and not lowered[i + len(word):i + len(word) + 1].isalpha())
    for i in starts:
        match = _NUMBER_WORD.match(text, i)
        if match is not None:
            yield match


def _occurrences(text: str, word: str):
    i = text.find(word)
    while i >= 0:
        yield i
        i = text.find(word, i + 1)


def _dates(text: str, reference: date | None):
    for m in _ISO_DATE.finditer(text):
        day = _day(int(m[1]), int(m[2]), int(m[3]))
        if day is not None:
            yield m.start(), m.end(), day
    for m in _CJK_DATE.finditer(text):  # "2025年6月12日", "6月12日", "6월 28일"
        year = int(m["year"]) if m["year"] else (reference.year if reference else None)
        day = _day(year, int(m["month"]), int(m["day"])) if year else None
        if day is not None:
            yield m.start(), m.end(), day
    for m in _DAY.finditer(text):  # a day's number, then its month around it: "12 juin", "June 12, 2025"
        next_two = text[m.end():m.end() + 3]
        after = _AFTER_DAY.match(text, m.end()) if any(c.isspace() for c in next_two) else None
        before = None if after else _BEFORE_DAY.search(text, max(0, m.start() - 14), m.start())
        if after is None and before is None:
            continue
        found = after if after is not None else before
        assert found is not None
        month_word = found["month"]
        if after is not None and month_word.lower() == "may" and not after["year"]:
            continue  # "12 may" is a verb more often than a date
        if before is not None and text[m.end():m.end() + 1].isalpha() and \
                text[m.end():m.end() + 2].lower() not in ("st", "nd", "rd", "th"):
            continue
        year_match = after if after is not None else _YEAR_AFTER.match(text, m.end())
        start = m.start() if after is not None else found.start()
        end = after.end() if after is not None else (year_match.end() if year_match else
                                                     m.end() + _ordinal_length(text, m.end()))
        written_year = year_match["year"] if year_match else None
        year = int(written_year) if written_year else (reference.year if reference else None)
        day = _day(year, _MONTHS[month_word.lower()], int(m.group(0))) if year else None
        if day is not None:
            yield start, end, day


def _ordinal_length(text: str, position: int) -> int:
    return 2 if text[position:position + 2].lower() in ("st", "nd", "rd", "th") else 0


def _day(year: int, month: int, day: int) -> date | None:
    try:
        return date(year, month, day) if 1800 <= year <= 2200 else None
    except ValueError:
        return None


def _number_figure(text: str, match, language: str) -> tuple[int, Figure] | None:
    """(where it starts, the figure) for a number match, if it states one."""
    raw = match.group(0)
    parsed = _parse_number(raw, match["g"], language)
    if parsed is None:
        return None
    value, precision = parsed
    start, end = match.start(), match.end()
    before = text[max(0, start - 8):start]
    sign = _PRE.search(before) if _may_end_a_sign(before) else None
    currency = _SIGNS[sign["sign"].lower()] if sign else None
    if sign:
        start -= len(sign.group(0))
    following = text[end:end + 2].lstrip()[:1]  # a scale, percent or currency starts with a letter or a sign
    post = _POST.match(text, end, min(len(text), end + 40)) if following and not (
        following.isdigit() or following in _NEVER_AFTER) else None
    scale_word = post["scale"] if post is not None else None
    if scale_word and scale_word.lower() in _ATTACHED_ONLY and (currency is None or (post and post["space"])):
        scale_word = None  # "14 m" is a length, "$14m" an amount
    scale = _scale(scale_word, language)
    word = post["currency"].lower() if post is not None and post["currency"] and currency is None else None
    if word is not None and ((word in _WEIGHT_TOO and not scale) or (
            word not in _WEIGHT_TOO and raw.isdigit() and len(raw) == 4 and 1800 <= value <= 2200)):
        word = None  # "200 pounds" is a weight ("£200", "2 billion pounds" are money); "in 2006 dollars" a year
    if post and (scale_word or post["percent"] or (post["currency"] and word)):
        end = post.end() if (post["percent"] or word) else _scale_end(text, post, end)
    if word is not None:
        currency = _CURRENCY_WORDS[word]
    percent = bool(post and post["percent"]) or (sign is None and bool(_PRE_PERCENT.search(before)))
    if percent and not (post and post["percent"]):
        start -= 1
    value, precision = value * scale if scale else value, precision * scale if scale else precision
    subject_from = (start, end)
    rate = _rate(text, end)
    if currency is not None and not percent:
        return start, Figure(MONEY, value, currency + rate, _subject(text, *subject_from, language),
                             text[start:end], precision, _qualifier(text, start))
    if percent:
        return start, Figure(PERCENT, value, "%", _subject(text, *subject_from, language), text[start:end],
                             precision, _qualifier(text, start))
    count = _count(text, start, end, value, precision, language, scaled=scale is not None)
    if count is not None and rate:
        count = dataclasses.replace(count, unit=rate)
    return (start, count) if count is not None else None


_PERIODS = {"annually": "year", "yearly": "year", "annum": "year", "monthly": "month", "weekly": "week",
            "daily": "day", "hourly": "hour", "jahr": "year", "monat": "month", "tag": "day", "an": "year",
            "mois": "month", "jour": "day", "año": "year", "mes": "month", "día": "day", "год": "year",
            "месяц": "month", "capita": "person", "head": "person"}
_RATE = regex.compile(
    r"\s*(?:(?:per|a|an|each|every|/|pro|par|al|por|в)\s*(?P<per>year|annum|season|month|week|day|hour|share|person|"
    r"head|capita|game|night|barrel|gallon|litre|liter|ton|tonne|kilo|kilogram|pound|ounce|mile|minute|jahr|monat|"
    r"tag|an|mois|jour|año|mes|día|год|месяц)|\s(?P<adverb>annually|yearly|monthly|weekly|daily|hourly))\b"
    r"(?!\s+(?:ago|earlier|later|before|after|from))", regex.IGNORECASE)


_PREVIOUS_WORD = regex.compile(r"(?r)([\p{L}][\p{L}\p{M}'’\-]*)[ \u00a0]+$")
_SIGN_WORDS = frozenset({"rs", "chf", "rmb", "zł"})


def _may_end_a_sign(before: str) -> bool:
    """Whether ``before`` may end with a currency sign or code: not when it ends with a lower-case word other than
    a sign ("in 2016", "about 50"), which is most numbers."""
    tail = before.rstrip()
    if not tail[-1:].isalpha() or not tail[-1:].islower():
        return bool(tail)
    word = tail.rsplit(None, 1)[-1]
    return word.lower() in _SIGN_WORDS or any(c.isupper() for c in word)


_WEIGHT_TOO = frozenset({"pound", "pounds"})
_NEVER_AFTER = frozenset(".,;:!?)]}\"'’”-–—/")


def _rate(text: str, end: int) -> str:
    """"/year" when the figure is a rate ("$23 million per season" is USD/season, not an amount of USD)."""
    if text[end:end + 1] not in (" ", "/"):
        return ""
    m = _RATE.match(text, end)
    if m is None:
        return ""
    period = (m["per"] or m["adverb"]).lower()
    return "/" + _PERIODS.get(period, period)


def _scale_end(text: str, post, end: int) -> int:
    return post.end("scale") + (1 if text[post.end("scale"):post.end("scale") + 1] == "." and
                                post["scale"].lower() in _ABBREVIATED else 0)


_ABBREVIATED = frozenset({"mrd", "mio", "mln", "mld", "tys", "тыс", "млн", "млрд", "трлн"})


def _scale(word: str | None, language: str) -> float | None:
    if not word:
        return None
    lower = word.lower()
    if lower in ("billion", "billions") and language in _LONG_SCALE:
        return 1e12
    return _SCALES.get(word) or _SCALES.get(lower)


def _parse_number(raw: str, grouping: str | None, language: str) -> tuple[float, float] | None:
    """(value, precision) of a written number, by the language's conventions."""
    digits = "".join(str(unicodedata.decimal(c)) if c.isdigit() else c for c in raw)
    comma_decimal = language in _COMMA_DECIMAL
    if "\u066b" in digits or "\u066c" in digits:  # the Arabic decimal and thousands separators
        digits, comma_decimal = digits.replace(",", "").replace("\u066c", ",").replace("\u066b", "."), False
        grouping = "," if grouping else None
    if grouping is not None:
        if grouping == " " and language not in _SPACE_GROUPING:
            return None  # "in 2016 123 people": two numbers, not one
        if grouping in ",." and (grouping == ",") == comma_decimal and digits.count(grouping) == 1:
            # one separator that this language reads as a decimal point: "14,300" in German is 14.3
            integer, fraction = digits.split(grouping)
            return _value(integer, fraction)
        tail = digits.split(grouping)[-1]
        fraction = ""
        for mark in ",.":
            if mark != grouping and mark in tail:
                tail, fraction = tail.split(mark, 1)
        integer = "".join(digits.split(grouping)[:-1]) + tail
        return _value(integer, fraction)
    for mark in ",.":
        if mark in digits:
            integer, fraction = digits.split(mark, 1)
            if (mark == ",") != comma_decimal and len(fraction) == 3 and integer != "0":
                return _value(integer + fraction, "")  # a grouped thousand without a second group: "14,300"
            return _value(integer, fraction)
    return _value(digits, "")


def _value(integer: str, fraction: str) -> tuple[float, float] | None:
    if not integer.isdigit() or (fraction and not fraction.isdigit()) or len(integer) > 15:
        return None
    value = float(f"{integer}.{fraction}" if fraction else integer)
    if fraction:
        return value, 10.0 ** -len(fraction)
    stripped = integer.rstrip("0")
    zeros = len(integer) - len(stripped) if value >= 100 else 0
    return value, 10.0 ** zeros


def _count(text: str, start: int, end: int, value: float, precision: float, language: str,
           scaled: bool) -> Figure | None:
    written = text[start:end]
    after = text[end:end + 1]
    if after and (after.isalnum() and not _is_cjk(after)) or after in ":/-–" and text[end + 1:end + 2].isdigit():
        return None  # "3D", "10:30", "2024/25", "10-12"
    if text[max(0, start - 1):start] in ("#", "№", "/", ":", "-", "−", ".") or value != value:
        return None
    if not scaled and written.isdigit() and len(written) == 4 and 1800 <= value <= 2200:
        return None  # a year
    if len(written) > 1 and written[0] == "0" and written[1].isdigit():
        return None  # "08", "000": a part of a time, a code or a split number, not a count
    if _NOT_A_COUNT.match(text, end):
        return None  # an age, a time of day
    previous = _PREVIOUS_WORD.search(text, max(0, start - 40), start)
    if previous and previous.group(1)[:1].isupper() and language not in _CAPITALISED_NOUNS and \
            not _sentence_start(text, previous.start(1)):
        return None  # part of a name: "Llama 4", "Windows 11", "Boeing 737"
    following = _WORD.match(text, end + 1) if text[end:end + 1] == " " else None
    if following and following.group(0)[:1].isupper() and language not in _CAPITALISED_NOUNS:
        return None  # an address or a name: "473 East 52nd Street", "12 Angry Men"
    compound = _WORD.match(text, end + 1) if text[end:end + 1] == "-" else None
    subject = compound.group(0).lower() if compound else _subject(text, start, end, language)  # "30-day"
    if subject is None:
        return None
    return Figure(COUNT, value, None, subject, written, precision, _qualifier(text, start))


def _word_count(text: str, match, language: str) -> Figure | None:
    word, end = match.group(0), match.end()
    value = float(_NUMBER_WORDS[word.lower()])
    before = text[max(0, match.start() - 12):match.start()].lower().split()
    if value in (12, 100) and before and (before[-1] in _VAGUE or before[-1] in _NUMBER_WORDS):
        return None  # "a few hundred", "four dozen" (read with its multiplier below)
    times = _MULTIPLIER.match(text, end)
    if times:  # "four dozen questions", "two hundred people"
        value, end = value * _NUMBER_WORDS[times.group(1).lower()], times.end()
    if _FRACTION.match(text, end):
        return None  # "three quarters of applicants"
    noun = _noun_after(text, end, language, connectors=False)
    if noun is None:
        return None
    return Figure(COUNT, value, None, noun, text[match.start():end], 1.0, _qualifier(text, match.start()))


_VAGUE = frozenset({"few", "several", "many", "some", "hundreds", "dozens"})
_MULTIPLIER = regex.compile(r"[ -](dozen|hundred)\b", regex.IGNORECASE)
_FRACTION = regex.compile(r"[ -](?:quarters?|thirds?|halves|half|fifths?|tenths?)\b", regex.IGNORECASE)
_NOT_A_COUNT = regex.compile(
    r"(?:[- ]years?[- ]old|[- ]months?[- ]old|-jährige|\s?[ap]\.?\s?m\b\.?|\s?[AP]M\b|\s?o'clock|\s?Uhr\b|\s?h\d\d"
    r"|\s?[時分秒시분초年月년월](?!間)|\s?[日일](?!間|간)|\s(?:утра|вечера|ночи|часов|часа|час)\b|\s?[πμ]\.\s?μ\."
    r"|\s(?:μεσημέρι|απόγευμα|πρωί|βράδυ))",
    regex.IGNORECASE)


_CJK_CHAR = regex.compile(r"[\p{Han}\p{Hiragana}\p{Katakana}\p{Hangul}]")
_CJK_RUN = regex.compile(r"[\p{Han}\p{Hangul}]{1,2}")


def _is_cjk(char: str) -> bool:
    return bool(_CJK_CHAR.match(char))


def _sentence_start(text: str, position: int) -> bool:
    before = text[max(0, position - 3):position].strip()
    return not before or before[-1] in ".!?\n\"“”'‘’:"


_QUALIFIER_OF = {phrase: q for q, phrases in _QUALIFIER_WORDS.items() for phrase in phrases}
_UNSPACED = tuple((p, q) for p, q in _QUALIFIER_OF.items() if not p[:1].isascii() or not p[:1].isalpha())
_QUALIFYING = frozenset(_QUALIFIER_OF)


def _qualifier(text: str, start: int) -> str | None:
    """The qualifier the words right before a figure make: the last one, two or three words, or a sign or a
    word written without a space before the number ("~", "約", "超过")."""
    before = text[max(0, start - 24):start].lower().rstrip()
    words = [w.lstrip("(\"“'‘«") for w in before.split()]
    for n in (3, 2, 1):
        if len(words) >= n:
            qualifier = _QUALIFIER_OF.get(" ".join(words[-n:]))
            if qualifier is not None:
                return qualifier
    if before[-1:].isascii() and before[-1:].isalpha():
        return None  # an unspaced qualifier is a sign or a word of a script without spaces
    for phrase, qualifier in _UNSPACED:
        if before.endswith(phrase):
            return qualifier
    return None


def _clause_end(text: str, position: int, limit: int = 80) -> int:
    window = text[position:position + limit]
    m = _CLAUSE_END.search(window)
    return position + (m.start() if m else len(window))


def _clause_start(text: str, position: int, limit: int = 80) -> int:
    last = _LAST_CLAUSE_END.search(text, max(0, position - limit), position)
    return last.end() if last else max(0, position - limit)


def _words_before(text: str, position: int, n: int) -> list[tuple[str, int]]:
    start = _clause_start(text, position)
    found = [(m.group(0), m.start() + start) for m in _WORD.finditer(text[start:position])]
    return found[::-1][:n]


def _noun_after(text: str, position: int, language: str, connectors: bool = True) -> str | None:
    """The head of the noun phrase right after a figure: up to two words before a function word."""
    end = _clause_end(text, position)
    chunk = text[position:end]
    if chunk[:1] and _is_cjk(chunk[:1]):
        run = _CJK_RUN.match(chunk)
        word = run.group(0) if run else None
        return None if word is None or word in _KOREAN_PARTICLES or word[:1] in _KOREAN_PARTICLES else word
    if not chunk[:1].isspace() and chunk[:1] != "-":
        return None
    found: list[str] = []
    for m in _TOKEN.finditer(chunk):
        if m.group(0)[0].isdigit() or len(found) == 6:  # the phrase ends at the next number
            break
        found.append(m.group(0))
    phrase: list[str] = []
    words = iter(found)
    for word in words:
        lower = word.lower()
        if not phrase and connectors and lower in _CONNECTORS:  # "$2 billion in revenue", "4.3% of its staff"
            for w in [w for w in words if w.lower() not in _DETERMINERS][:3]:
                if w.lower() in _STOP or not _plain_word(w, language):
                    break
                phrase.append(w)
            break
        if lower in _STOP or not _plain_word(word, language):
            break
        phrase.append(word)
        if len(phrase) == 2:
            break
    if not phrase:
        return None
    phrase = [w for w in phrase if (len(w) > 2 or _is_cjk(w[:1])) and w.lower() not in _CURRENCY_WORDS
              and w.lower() not in _NUMBER_WORDS]
    if not phrase:
        return None
    head = phrase[-1].lower()
    if language == "en" and len(phrase) == 2 and head.endswith(("ed", "ing")):
        head = phrase[0].lower()  # "$870 million reported", "50 experts joining"
    elif language == "en" and head.endswith("ed") and len(phrase) == 1:
        return None
    return head if head not in _MONTHS else None


def _plain_word(word: str, language: str) -> bool:
    return language in _CAPITALISED_NOUNS or not word[:1].isupper()


def _subject(text: str, start: int, end: int, language: str, after: bool = True) -> str | None:
    """The word for what the figure at text[start:end] measures: the noun after it, else the nearest content
    word before it in its clause (names and qualifiers skipped)."""
    if after:
        noun = _noun_after(text, end, language)
        if noun is not None:
            return noun
    for word, _ in _words_before(text, start, 6):
        lower = word.lower()
        if lower in _STOP or lower in _MONTHS or lower in _QUALIFYING or lower in _NUMBER_WORDS:
            continue
        if (word[:1].isupper() and language not in _CAPITALISED_NOUNS) or (len(word) < 3 and not _is_cjk(word[:1])):
            continue
        return _spaceless_word(lower) if _is_cjk(lower[-1:]) else lower
    return None


# Korean particles written after a figure ("1550원으로"): grammar, not what the figure measures
_KOREAN_PARTICLES = frozenset({"으로", "로", "에서", "에", "의", "을", "를", "이", "가", "은", "는", "과", "와", "도",
                               "만", "까지", "부터"})
_KANA = regex.compile(r"[\p{Hiragana}\p{Katakana}ー]+")


def _spaceless_word(run: str) -> str | None:
    """The last word of a run of Chinese, Japanese or Korean text before a figure, by ICU's segmentation
    (``pipelines.words``): "投資約" -> "投資". Particles (kana alone) and qualifiers are passed over."""
    from pipelines.words import segment

    words = [w for w in segment(run[-12:]) if not (w in _QUALIFYING or _KANA.fullmatch(w) or w.isdigit())]
    longer = [w for w in words if len(w) > 1]  # a lone character is mostly a suffix: 投資|額, 税|収
    return (longer or words)[-1] if words else None


_SUFFIXES = ("ations", "ation", "ments", "ment", "ings", "ing", "ed", "es", "s", "e")


def subject_key(subject: str | None) -> str | None:
    """A subject folded for comparison: lower-case, and English inflections and derivations stripped
    ("investment", "investing", "invested" -> "invest"; "valuation", "values", "valued" -> "valu")."""
    if not subject:
        return None
    word = subject.lower().replace("’", "'")
    if not word.isascii():
        return word
    for suffix in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3 and not word.endswith("ss"):
            word = word[: -len(suffix)]
            if suffix in ("s", "es") and word.endswith("e") and len(word) > 3:
                word = word[:-1]
            break
    return word


def to_row(figure: Figure) -> dict:
    """A figure as the articles' ``figures`` column holds it (``schemas.FIGURE``)."""
    return {"kind": figure.kind, "value": figure.value, "unit": figure.unit, "subject": figure.subject,
            "text": figure.text, "precision": figure.precision, "qualifier": figure.qualifier, "day": figure.day}


def from_row(row: dict) -> Figure:
    day = row.get("day")
    if isinstance(day, datetime):
        day = day.date()
    return Figure(row["kind"], row.get("value"), row.get("unit"), row.get("subject"), row.get("text") or "",
                  row.get("precision") or 1.0, row.get("qualifier"), day)
