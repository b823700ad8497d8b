"""What a story's versions agree and disagree on: pure logic, no Beam."""

from pathlib import Path

from pipelines.figures import figures
from pipelines.stories.agreement import agreement

SEEDS = Path(__file__).resolve().parents[2] / "fixtures" / "seeds"


def stated(*versions):
    return [(outlet, f) for outlet, text in versions for f in figures(text, "en")]


def by_subject(rows):
    return {(r.subject, r.text): (r.outlets, r.disputed) for r in rows}


def test_the_seeds_disagree_on_the_investment_only():
    versions = [(p.stem, p.read_text()) for p in sorted(SEEDS.glob("version-*.txt"))]
    rows = agreement(stated(*versions))
    disputed = {(r.value, r.outlets) for r in rows if r.disputed}
    assert disputed == {(14.3e9, ("version-0", "version-1", "version-3", "version-4")), (14.8e9, ("version-2",))}
    assert {r.subject for r in rows if r.disputed} == {"investment"}
    agreed = {(r.kind, r.value): r.outlets for r in rows if not r.disputed}
    assert agreed[("percent", 49.0)] == tuple(f"version-{k}" for k in range(5))
    assert agreed[("money", 29e9)] == ("version-0", "version-1", "version-3", "version-4")


def test_rounding_is_agreement():
    rows = agreement(stated(("a", "Meta made a $14.3 billion investment."),
                            ("b", "Meta made a $14 billion investment."),
                            ("c", "Meta made a $14.3B investment.")))
    assert [(r.outlets, r.disputed) for r in rows] == [(("a", "b", "c"), False)]


def test_a_difference_beyond_rounding_is_a_dispute():
    rows = agreement(stated(("a", "The club offered a $163 million contract."),
                            ("b", "The club offered a $181 million contract on Sunday."),
                            ("c", "A $163 million contract was on the table; the club offered at least $155 million.")))
    disputed = {(r.value, r.outlets) for r in rows if r.disputed}
    assert disputed == {(163e6, ("a", "c")), (181e6, ("b",))}


def test_round_values_are_never_disputed():
    # "$160 million" and "$180 million" may be roundings, or two teams' offers: too vague to call a disagreement
    rows = agreement(stated(("a", "The club offered a $160 million contract."),
                            ("b", "The club offered a $180 million contract.")))
    assert not any(r.disputed for r in rows)


def test_counts_are_listed_never_disputed():
    # "people" names the dead, the hurt and the arrested alike: a count's word is too vague to dispute on
    rows = agreement(stated(("a", "The quake killed 12 people."), ("b", "The quake killed 30 people."),
                            ("c", "It killed 12 people.")))
    assert [(r.value, r.outlets, r.disputed) for r in rows] == [(12.0, ("a", "c"), False)]


def test_a_range_agrees_with_the_values_inside_it():
    rows = agreement(stated(("a", "Offers were in the $140 million to $160 million range."),
                            ("b", "They offered $150 million.")))
    assert not any(r.disputed for r in rows)


def test_an_outlet_stating_both_values_makes_them_two_quantities():
    # one outlet gives both the valuation now and a year ago: the others' single value is not contradicted
    rows = agreement(stated(("a", "The deal gives a $29 billion valuation, up from a $14 billion valuation."),
                            ("b", "The deal gives a $29 billion valuation.")))
    assert not any(r.disputed for r in rows)


def test_different_subjects_never_dispute():
    rows = agreement(stated(("a", "It cut 300 jobs."), ("b", "It opened 12 stores.")))
    assert rows == ()


def test_one_outlet_alone_is_not_listed():
    assert agreement(stated(("a", "It cut 300 jobs and opened 12 stores."))) == ()
