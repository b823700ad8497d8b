import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import apache_beam as beam
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from pipelines import state
from pipelines.config import StoriesConfig
from pipelines.figures import figures
from pipelines.records import Article, Run
from pipelines.stories.assign import AssignStories, assign_batch, story_rows
from pipelines.stories.index import StoryIndex, load_index
from pipelines.text import content_hash
from pipelines.urls import stable_id
from tests.stories.helpers import T0, TEXTS, StagedRefs, feat, save_index

CFG = StoriesConfig()


def by_id(result):
    return {a.article_id: a for a in result.assignments}


def test_same_event_joins_different_event_starts_a_story():
    index = StoryIndex()
    r = by_id(assign_batch(index, [feat("a", TEXTS["deal"]), feat("b", TEXTS["deal2"], 1),
                                   feat("c", TEXTS["llama"], 2), feat("d", TEXTS["weather"], 3)], CFG, T0))
    assert r["a"].story_id == r["b"].story_id == stable_id("story", "a")
    assert len({r["a"].story_id, r["c"].story_id, r["d"].story_id}) == 3
    assert all(x.duplicate_of is None for x in r.values())


def test_an_undated_article_is_not_kept_apart_by_its_fetch_time():
    # the same follow-up, fetched in a run five days after the story's (dated) article: undated, it joins;
    # dated five days later, it is outside the 3-day window and starts a story
    for dated, joins in ((False, True), (True, False)):
        index = StoryIndex()
        first = by_id(assign_batch(index, [feat("a", TEXTS["deal"])], CFG, T0))
        late = replace(feat("late", TEXTS["deal2"], 24 * 5), dated=dated)
        r = by_id(assign_batch(index, [late], CFG, T0))
        assert (r["late"].story_id == first["a"].story_id) is joins
    story = StoryIndex()
    assign_batch(story, [feat("a", TEXTS["deal"]), replace(feat("late", TEXTS["deal2"], 24 * 5), dated=False)], CFG, T0)
    (held,) = story.stories.values()
    assert held.dated_last == T0 and held.last_seen == T0 + timedelta(days=5)  # the dated span skips fetch times


def test_exact_and_near_copies_point_at_the_original():
    index = StoryIndex()
    result = assign_batch(index, [feat("orig", TEXTS["llama"] * 3), feat("copy", TEXTS["llama"] * 3, 1),
                                  feat("near", (TEXTS["llama"] * 3).replace("phones,", "smartphones,", 1), 2)], CFG, T0)
    r = by_id(result)
    assert (r["copy"].duplicate_of, r["copy"].duplicate_kind) == ("orig", "exact")
    assert (r["near"].duplicate_of, r["near"].duplicate_kind) == ("orig", "near")
    assert r["orig"].story_id == r["copy"].story_id == r["near"].story_id
    assert result.counts["duplicates_exact"] == 1 and result.counts["duplicates_near"] == 1


def test_assignment_ignores_input_order():
    feats = [feat("a", TEXTS["deal"]), feat("b", TEXTS["deal2"], 1), feat("c", TEXTS["llama"], 1),
             feat("d", TEXTS["weather"], 2)]
    expected = by_id(assign_batch(StoryIndex(), feats, CFG, T0))
    for seed in range(5):
        shuffled = feats[:]
        random.Random(seed).shuffle(shuffled)
        assert by_id(assign_batch(StoryIndex(), shuffled, CFG, T0)) == expected


def test_story_continues_across_batches_and_rows_are_cumulative():
    index = StoryIndex()
    first = assign_batch(index, [feat("a", TEXTS["deal"], source="Ledger")], CFG, T0)
    second = assign_batch(index, [feat("b", TEXTS["deal2"], 5, source="Wire"), feat("a", TEXTS["deal"])], CFG, T0)
    assert [a.article_id for a in second.assignments] == ["a", "b"]  # "a" keeps the story it was given
    assert {a.story_id for a in second.assignments} == {first.assignments[0].story_id}
    assert second.counts["stories_continued"] == 1 and second.counts["stories_new"] == 0
    (story,) = second.stories
    assert story.article_count == 2 and story.sources == ("Ledger", "Wire") and story.representative_id == "a"


def article(article_id: str, text: str, hours: float, published=True) -> Article:
    when = datetime.fromtimestamp(T0.timestamp() + hours * 3600, UTC)
    return Article(article_id, f"https://x.example/{article_id}", f"https://x.example/{article_id}",
                   f"https://x.example/{article_id}", "feed", "x.example", None, (), when if published else None,
                   when, "en", None, text, len(text.split()), content_hash(text))


def test_assign_stories_composite_continues_stored_index(tmp_path):
    state_dir = str(tmp_path / "state")
    index = StoryIndex()
    assign_batch(index, [feat("a", TEXTS["deal"])], CFG, T0)
    save_index(state_dir, "20250612T000000Z-prev", index)
    run = Run("20250613T000000Z-next", datetime(2025, 6, 13, tzinfo=UTC))
    deal_story = stable_id("story", "a")
    with TestPipeline() as p:
        out = (p | beam.Create([article("b", TEXTS["deal2"], 2), article("c", TEXTS["weather"], 3)])
               | "Stage" >> StagedRefs(run, tmp_path / "staged")
               | AssignStories(CFG, state_dir, run))
        assert_that(out["assignments"] | beam.Map(lambda a: (a.article_id, a.story_id, a.duplicate_of)),
                    equal_to([("b", deal_story, None), ("c", stable_id("story", "c"), None)]), label="articles")
        assert_that(out["stories"] | beam.Map(lambda s: (s.story_id, s.article_count)),
                    equal_to([(deal_story, 2), (stable_id("story", "c"), 1)]), label="stories")
        assert_that(out["index"], equal_to([f"snapshot-{run.run_id}.json.gz"]), label="index written")
    # written, not yet in force: a run commits it once its articles are written
    assert load_index(state_dir)[0].saved_by == "20250612T000000Z-prev"
    state.commit(state_dir, f"snapshot-{run.run_id}.json.gz")
    committed, _ = load_index(state_dir)
    assert committed.saved_by == run.run_id and set(committed.articles) == {"a", "b", "c"}


def test_assign_stories_rejects_an_article_whose_staged_features_cannot_be_read(tmp_path):
    run = Run("20250613T000000Z-next", datetime(2025, 6, 13, tzinfo=UTC))
    with TestPipeline() as p:
        refs = (p | beam.Create([article("b", TEXTS["deal2"], 2), article("c", TEXTS["weather"], 3)])
                | "Stage" >> StagedRefs(run, tmp_path / "staged"))
        lost = refs | beam.Map(lambda r: replace(r, file=str(tmp_path / "gone")) if r.article_id == "b" else r)
        out = lost | AssignStories(CFG, str(tmp_path / "state"), run)
        assert_that(out["assignments"] | beam.Map(lambda a: (a.article_id, a.story_id)),
                    equal_to([("c", stable_id("story", "c"))]), label="the other article")
        assert_that(out["rejects"] | beam.Map(lambda r: (r.url, r.stage, r.reason)),
                    equal_to([("https://x.example/b", "stories", "internal_error")]), label="rejects")


def with_figures(f):
    return replace(f, figures=figures(f"{f.title or ''}\n\n{TEXT_OF[f.article_id]}", "en"))


TEXT_OF: dict[str, str] = {}


def version(article_id, text, hours, source, title=None, dated=True):
    TEXT_OF[article_id] = text
    return with_figures(replace(feat(article_id, text, hours, source, title or article_id), dated=dated))


DEAL = [  # four versions of one deal; the first to arrive is the outlier ($14.8 billion, a different slant)
    ("odd", "Insiders say Meta is investing $14.8 billion in Scale AI, a data-labeling start-up, in an unusual "
            "arrangement; Scale AI chief executive Alexandr Wang joins a Meta superintelligence lab.", 0, "Odd"),
    ("a", TEXTS["deal"], 1, "A"),
    ("b", TEXTS["deal2"], 2, "B"),
    ("c", TEXTS["deal"].replace("hires chief executive", "brings in chief executive"), 3, "C"),
]


def test_the_headline_is_the_version_nearest_the_storys_centre_and_follows_new_versions():
    index = StoryIndex()
    first = assign_batch(index, [version(*DEAL[0])], CFG, T0)
    assert first.stories[0].title == "odd"  # alone, it represents its story
    result = assign_batch(index, [version(*v) for v in DEAL[1:]], CFG, T0 + timedelta(hours=5))
    (story,) = result.stories
    assert story.title != "odd" and story.representative_id == story.title  # the titles are the ids here
    assert story.first_article_id == "odd"  # first by publication time, whatever represents it


def test_the_first_article_is_by_publication_time_not_arrival():
    index = StoryIndex()
    assign_batch(index, [version("late", TEXTS["deal"], 10, "Late")], CFG, T0)
    result = assign_batch(index, [version("early", TEXTS["deal2"], 2, "Early"),
                                  version("undated", TEXTS["deal"] + " More.", 0, "Undated", dated=False)],
                          CFG, T0 + timedelta(hours=12))
    (story,) = result.stories
    assert story.first_article_id == "early"  # an undated article counts after every dated one


def test_counts_distinguish_copies_and_outlets():
    index = StoryIndex()
    result = assign_batch(index, [version("a", TEXTS["deal"], 0, "A"), version("copy", TEXTS["deal"], 1, "A"),
                                  version("b", TEXTS["deal2"], 2, "B")], CFG, T0)
    (story,) = result.stories
    assert (story.article_count, story.original_count, story.outlet_count) == (3, 2, 2)


def test_story_rows_carry_agreement_and_disputes():
    index = StoryIndex()
    result = assign_batch(index, [version(*v) for v in DEAL], CFG, T0)
    (story,) = result.stories
    assert story.disputes == 1
    disputed = {(f.value, f.outlets) for f in story.figures if f.disputed}
    # "c" is a near copy of "a": a copy's figures are its original's, not another version's
    assert disputed == {(14.8e9, ("Odd",)), (14.3e9, ("A", "B"))}
    agreed = {(f.kind, f.value): f.outlets for f in story.figures if not f.disputed}
    assert agreed[("money", 29e9)] == ("A", "B")


def test_the_snapshot_keeps_what_story_rows_need(tmp_path):
    index = StoryIndex()
    assign_batch(index, [version(*v) for v in DEAL], CFG, T0)
    state_dir = str(tmp_path / "state")
    save_index(state_dir, "20250101T000000Z-a", index)
    loaded, _ = load_index(state_dir)
    assert loaded.to_json() == index.to_json()
    assert story_rows(loaded, loaded.stories) == story_rows(index, index.stories)
    # a format-4 record: every member an original, no candidates or figures, born on its first day
    record = next(iter(index.to_json()["stories"]))
    old = {k: v for k, v in record.items() if k not in ("original_count", "first_article_id", "first_article_time",
                                                         "first_article_dated", "members", "figures", "born")}
    older = StoryIndex.from_json({"format": 4, "stories": [old], "articles": []})
    (story,) = older.stories.values()
    assert (story.original_count, story.members, story.figures, story.born) == (4, [], [], "2025-06-12")
    assert len(index.stories[story.story_id].members) == 3  # the near copy is no candidate
