"""What a story's versions agree and disagree on: the figures its outlets state, grouped into values.

For each kind and unit (USD amounts, USD per year, percentages, counts, dates), the figures the outlets state are
grouped into values, exact figures first and the most precisely written first: a figure joins the nearest value
it is compatible with (``figures.compatible``: within rounding, its qualifier and, for a range, its width) when
it measures the same thing (the same ``subject_key``) or when both are specific (three or more significant
digits, or a day: "$14.3 billion" stated twice is one quantity, whatever word stands next to it). So "$14
billion" joins "$14.3 billion" as agreeing by rounding.

Two values are disputed when they are incompatible, both stated precisely (``disputable``: exact, and money
to three significant digits), no outlet states both (an outlet giving a valuation now and a year ago makes them
two quantities), and they measure the same thing: one outlet states one of them for a subject and another the
other for the same subject, each stating no third value for it. A subject that
says how a figure is given rather than which quantity it is ("worth", "range", "total", "people": see
``VAGUE_SUBJECTS``) never makes two values one quantity. A false "the outlets disagree" costs an analyst
more than a missed one, so everything ambiguous counts as agreement.

Only amounts of money and percentages are disputed. A count's word names many quantities in one story (people
died, were hurt, were arrested, marched): on the labelled development stories 6 of 7 disputed counts were not
disagreements (``benchmarks/figures_eval.py``). Counts and dates are listed as values the outlets agree on.

Listed are the values stated by two or more outlets, and every disputed value.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

import regex

from pipelines.figures import DATE, MONEY, PERCENT, Figure, compatible, subject_key
from pipelines.records import StoryFigure

MAX_VALUES = 50  # per story row
DISPUTED_KINDS = (MONEY, PERCENT)
# Words that say how a figure is given, not which quantity it is ("worth $184 million", "in the $75 million
# range", "a total of"): two values sharing only such a word are not known to be one quantity.
VAGUE_SUBJECTS = frozenset(subject_key(w) for w in (
    "range", "total", "sum", "amount", "figure", "number", "worth", "cost", "price", "level", "estimated", "record",
    "people", "persons", "times", "about", "some", "more", "less", "same", "other", "another", "only", "just"))


@dataclass
class _Value:
    """A value and the figures stating it, with their outlets by subject key, kept as figures are added."""

    anchor: Figure
    stated: list[tuple[str, Figure]] = field(default_factory=list)
    disputed_on: set[str] = field(default_factory=set)
    _outlets: set[str] = field(default_factory=set)
    _by_key: dict[str, set[str]] = field(default_factory=dict)
    bounds: tuple[float, float] = (0.0, 0.0)  # of the anchor, and whether it is specific and disputable
    specific: bool = False
    disputable: bool = False

    def __post_init__(self) -> None:
        self.bounds, self.specific, self.disputable = self.anchor.bounds(), specific(self.anchor), \
            disputable(self.anchor)

    def add(self, outlet: str, figure: Figure) -> None:
        self.stated.append((outlet, figure))
        self._outlets.add(outlet)
        key = figure.subject_key
        if key:
            self._by_key.setdefault(key, set()).add(outlet)

    def outlets(self, key: str | None = None) -> set[str]:
        return self._outlets if key is None else self._by_key.get(key, set())

    def subject_keys(self) -> set[str]:
        return set(self._by_key)


def specific(figure: Figure) -> bool:
    """Written precisely enough that two outlets stating it state the same quantity."""
    return figure.kind == DATE or (_significant_digits(figure) >= 3 and figure.qualifier is None)


def disputable(figure: Figure) -> bool:
    """Stated precisely enough that another outlet's different value is a disagreement, not another quantity
    or a rounding: exact (no qualifier, not a range), and written to three significant digits for money
    ("$14.3 billion", not "$80 million"), two for a percentage ("49%")."""
    return figure.qualifier is None and _significant_digits(figure) >= (3 if figure.kind == MONEY else 2)


_NUMBERS = regex.compile(r"\d+(?:[.,\u066b\u066c'’]\d+)*")
_FRACTION = regex.compile(r"[.,\u066b](?:\d{1,2}|\d{4,})$")  # a decimal part, not a group of three digits


def _significant_digits(figure: Figure) -> int:
    """Significant digits of the figure's number as written (0 for a range: two numbers)."""
    numbers = _NUMBERS.findall(figure.text)
    if len(numbers) != 1:
        return 0
    digits = "".join(c for c in numbers[0] if c.isdigit()).lstrip("0")
    fraction = _FRACTION.search(numbers[0])  # written decimals count, trailing zeros of a whole number do not
    return len(digits if fraction else digits.rstrip("0"))


def _relative_precision(figure: Figure) -> float:
    if figure.value is None or figure.value == 0:
        return figure.precision
    return figure.precision / abs(figure.value)


def agreement(stated: Iterable[tuple[str, Figure]]) -> tuple[StoryFigure, ...]:
    """The values a story's outlets state, from (outlet, figure) pairs: those stated by two or more outlets,
    and the disputed ones, disputed first, then by the outlets stating them."""
    by_unit: dict[tuple[str, str | None], list[tuple[str, Figure]]] = defaultdict(list)
    for outlet, figure in stated:
        by_unit[(figure.kind, figure.unit)].append((outlet, figure))
    rows: list[StoryFigure] = []
    for (kind, unit), group in sorted(by_unit.items(), key=lambda kv: (kv[0][0], kv[0][1] or "")):
        values = _values(group)
        if kind in DISPUTED_KINDS:
            _mark_disputes(values, group)
        words = _words(group)
        for value in values:
            outlets = value.outlets()
            if len(outlets) < 2 and not value.disputed_on:
                continue
            subject = words.get(min(value.disputed_on)) if value.disputed_on else _subject(value)
            rows.append(StoryFigure(kind, unit, subject, value.anchor.value, value.anchor.day,
                                    value.anchor.text, tuple(sorted(outlets)), bool(value.disputed_on)))
    rows.sort(key=lambda r: (not r.disputed, r.kind, r.subject or "", -len(r.outlets), r.value or 0.0,
                             r.day.toordinal() if r.day else 0))
    return tuple(rows[:MAX_VALUES])


def _values(group: list[tuple[str, Figure]]) -> list[_Value]:
    values: list[_Value] = []
    ordered = sorted(group, key=lambda of: (of[1].qualifier is not None, _relative_precision(of[1]), of[0],
                                            of[1].text, of[1].subject or ""))
    for outlet, figure in ordered:
        key, exact, bounds = figure.subject_key, specific(figure), figure.bounds()
        joins = [v for v in values if _overlap(v.bounds, bounds) and (key in v._by_key or (exact and v.specific))]
        if joins:  # the nearest: "at least 12" is compatible with 30 too, but states 12
            value = min(joins, key=lambda v: abs(_position(v.anchor) - _position(figure)))
        else:
            value = _Value(figure)
            values.append(value)
        value.add(outlet, figure)
    return values


def _overlap(a: tuple[float, float], b: tuple[float, float]) -> bool:
    """Whether two figures' bounds overlap: ``figures.compatible`` of bounds computed once."""
    return a[0] <= b[1] and b[0] <= a[1]


def _position(figure: Figure) -> float:
    return float(figure.day.toordinal()) if figure.day is not None else (figure.value or 0.0)


def _mark_disputes(values: list[_Value], group: list[tuple[str, Figure]]) -> None:
    several = _several(group)
    for i, one in enumerate(values):
        for other in values[i + 1:]:
            if not (one.disputable and other.disputable) or _overlap(one.bounds, other.bounds) or \
                    one.outlets() & other.outlets():
                continue  # one value; an outlet states both, so they are two quantities; or a round value
            for key in sorted(one.subject_keys() & other.subject_keys() - VAGUE_SUBJECTS):
                if _sides(one, other, key, several) and _sides(other, one, key, several):
                    one.disputed_on.add(key)
                    other.disputed_on.add(key)


def _sides(one: _Value, other: _Value, key: str, several: set[tuple[str, str]]) -> set[str]:
    """The outlets that state ``one`` for ``key``, not ``other``, and no third value for ``key``."""
    return {o for o in one.outlets(key) - other.outlets() if (o, key) not in several}


def _several(group: list[tuple[str, Figure]]) -> set[tuple[str, str]]:
    """(outlet, subject key) pairs for which the outlet states values that differ beyond rounding: "12 people
    died and 30 people were hurt" makes "people" name several quantities in that outlet's version."""
    by: dict[tuple[str, str], list[Figure]] = defaultdict(list)
    for outlet, figure in group:
        if figure.subject_key:
            by[(outlet, figure.subject_key)].append(figure)
    return {k for k, fs in by.items() if any(not compatible(a, b) for a in fs for b in fs)}


def _most_used(stated: Iterable[tuple[str, Figure]]) -> str | None:
    """The subject word most outlets use (each outlet counted once per word), then the first in order."""
    words = Counter(w for _, w in {(o, f.subject) for o, f in stated if f.subject})
    return min(words, key=lambda w: (-words[w], w)) if words else None


def _subject(value: _Value) -> str | None:
    return _most_used(value.stated)


def _words(group: list[tuple[str, Figure]]) -> dict[str, str]:
    """For each subject key, the word the outlets use most for it: the two sides of a dispute are shown
    under one word."""
    by_key: dict[str, list[tuple[str, Figure]]] = defaultdict(list)
    for outlet, figure in group:
        if figure.subject_key:
            by_key[figure.subject_key].append((outlet, figure))
    return {key: _most_used(stated) or key for key, stated in by_key.items()}
