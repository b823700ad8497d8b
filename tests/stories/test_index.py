from collections import Counter
from dataclasses import replace
from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines import state
from pipelines.config import StoriesConfig
from pipelines.stories.assign import assign_batch
from pipelines.stories.features import cosine
from pipelines.stories.index import StoryIndex, load_index
from tests.stories.helpers import T0, TEXTS, feat, save_index

CFG = StoriesConfig()


def _candidates(index, terms, time, window, dated=True):
    """The candidate stories, in id order."""
    stories = [index.story_at(slot) for slot in index.candidate_slots(terms, time, window, dated).tolist()]
    return sorted(stories, key=lambda s: s.story_id)


def _near_in_time(story, time, window):
    """Whether a dated article at ``time`` may join: within the window of the story's dated members, if any."""
    if story.dated_first is None or story.dated_last is None:
        return True
    return story.dated_first - window <= time <= story.dated_last + window


def test_snapshot_roundtrip_through_filesystems(tmp_path):
    index = StoryIndex()
    assign_batch(index, [feat("a", TEXTS["deal"]), feat("b", TEXTS["llama"], 1)], CFG, T0)
    state_dir = str(tmp_path / "state")
    assert load_index(state_dir)[0].stories == {}  # first run: empty
    for run_id in ("20250101T000000Z-a", "20250102T000000Z-b", "20250103T000000Z-c", "20250104T000000Z-d"):
        save_index(state_dir, run_id, index)
    loaded, unreadable = load_index(state_dir)
    assert unreadable == []
    assert loaded.to_json() == index.to_json()
    assert sorted(p.name for p in (tmp_path / "state").iterdir()) == [
        "CURRENT", "snapshot-20250102T000000Z-b.json.gz", "snapshot-20250103T000000Z-c.json.gz",
        "snapshot-20250104T000000Z-d.json.gz"]
    # the loaded index answers lookups like the original
    terms = list(feat("x", TEXTS["deal2"], 2).vector())
    assert [s.story_id for s in _candidates(loaded, terms, feat("x", "", 2).time, timedelta(days=3))] == \
        [s.story_id for s in _candidates(index, terms, feat("x", "", 2).time, timedelta(days=3))]


def test_prune_drops_stories_outside_the_window():
    index = StoryIndex()
    assign_batch(index, [feat("old", TEXTS["llama"], 0)], CFG, T0)
    assign_batch(index, [feat("new", TEXTS["weather"], 24 * 5)], CFG, T0 + timedelta(days=5))  # 3-day window
    assert [s.representative_id for s in index.stories.values()] == ["new"]
    assert set(index.articles) == {"new"}
    assert index.exact_copy_of(feat("old", TEXTS["llama"]).content_hash) is None
    assert all(index._postings.values())  # no empty postings left behind


def test_candidates_respect_time_window():
    index = StoryIndex()
    assign_batch(index, [feat("a", TEXTS["deal"], 0)], CFG, T0)
    terms = list(feat("b", TEXTS["deal2"]).vector())
    assert _candidates(index, terms, feat("b", "", 24).time, timedelta(days=3))
    assert not _candidates(index, terms, feat("b", "", 24 * 4).time, timedelta(days=3))


def test_near_copy_candidates_come_from_lsh_bands():
    index = StoryIndex()
    base = " ".join(f"word{i}" for i in range(400))
    assign_batch(index, [feat("orig", base), feat("other", TEXTS["weather"], 1)], CFG, T0)
    edited = base.replace("word200", "changed")
    found = [a.article_id for a in index.near_copy_candidates(feat("x", edited).minhash)]
    assert found == ["orig"]


def test_candidates_are_bounded_and_best_voted(monkeypatch):
    import pipelines.stories.index as index_module

    index = StoryIndex()
    for i in range(6):
        index.add_story(index_module.StoryState(f"s{i}", f"a{i}", None, feat("t", "").time, feat("t", "").time, 0,
                                                set(), {}))
        index.merge_into_centroid(index.stories[f"s{i}"], {"shared": 1.0, f"own{i}": 0.5})
    time, window = feat("t", "").time, timedelta(days=3)
    monkeypatch.setattr(index_module, "MAX_CANDIDATES", 2)
    found = _candidates(index, [("shared", 0.5), ("own4", 0.9), ("own1", 0.8)], time, window)
    assert [s.story_id for s in found] == ["s1", "s4"]
    monkeypatch.setattr(index_module, "MAX_POSTING", 3)  # "shared" now identifies nothing
    assert [s.story_id for s in _candidates(index, [("shared", 1.0)], time, window)] == []


def test_time_narrows_candidates_only_where_both_sides_are_dated():
    window = timedelta(days=3)
    dated = StoryIndex()
    assign_batch(dated, [feat("a", TEXTS["deal"], 0)], CFG, T0)
    undated = StoryIndex()
    assign_batch(undated, [replace(feat("a", TEXTS["deal"], 0), dated=False)], CFG, T0)
    terms = list(feat("b", TEXTS["deal2"]).vector())
    late = feat("b", "", 24 * 10).time  # ten days later
    assert not _candidates(dated, terms, late, window)  # both dated: too far apart
    assert _candidates(dated, terms, late, window, dated=False)  # the article's time is a fetch time
    assert _candidates(undated, terms, late, window)  # the story's times are fetch times
    assert undated.stories[next(iter(undated.stories))].dated_first is None


def test_older_snapshots_are_read():
    index = StoryIndex()
    assign_batch(index, [feat("a", TEXTS["deal"], 0)], CFG, T0)
    doc = index.to_json() | {"format": 2, "newest": T0.isoformat()}  # format 2 kept the newest article time
    assert StoryIndex.from_json(doc).to_json() == index.to_json()
    doc["format"] = 1  # format 1 had no dated span: every member is read as dated
    for story in doc["stories"]:
        del story["dated_first"], story["dated_last"]
    loaded = StoryIndex.from_json(doc)
    story = next(iter(loaded.stories.values()))
    assert (story.dated_first, story.dated_last) == (story.first_seen, story.last_seen)
    assert loaded.to_json() == index.to_json()


def test_the_index_ages_by_the_runs_clock_not_by_article_times():
    index = StoryIndex()
    texts = [" ".join(f"event{i}-term{j}" for j in range(12)) for i in range(16)]
    assign_batch(index, [feat(f"a{i}", text, i) for i, text in enumerate(texts)], CFG, T0)
    # one article claims a date ten years ahead: the stories of the run before stay
    assign_batch(index, [feat("future", TEXTS["weather"], 24 * 3650)], CFG, T0 + timedelta(hours=1))
    assert len(index.stories) == 17
    copies = assign_batch(index, [feat(f"copy{i}", text, 20 + i) for i, text in enumerate(texts)], CFG,
                          T0 + timedelta(hours=2))
    assert copies.counts["duplicates_exact"] == 16 and copies.counts["stories_new"] == 0
    # a story no run has added to for longer than the window is dropped, however its articles are dated
    assign_batch(index, [feat("later", TEXTS["llama"], 0)], CFG, T0 + timedelta(days=3, hours=3))
    assert [s.representative_id for s in index.stories.values()] == ["later"]


def _reference_candidates(index, terms, time, window, dated, limit):
    """What candidate_slots must choose, computed the plain way from the stories held: vote with the terms
    each story posts (those posted by too many stories are skipped), filter by time, best first, top few."""
    import pipelines.stories.index as index_module

    posted = {s.story_id: s.top_terms(index_module.POSTING_TERMS) for s in index.stories.values()}
    posting_size = Counter(term for top in posted.values() for term in top)
    votes = {}
    for term, weight in terms:
        if posting_size[term] <= index_module.MAX_POSTING:
            for story_id in sorted(posted):
                if term in posted[story_id]:
                    votes[story_id] = votes.get(story_id, 0.0) + weight
    near = [(v, i) for i, v in votes.items() if not dated or _near_in_time(index.stories[i], time, window)]
    return sorted(i for _, i in sorted(near, key=lambda vi: (-vi[0], vi[1]))[:limit])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.dictionaries(st.sampled_from([f"t{i}" for i in range(12)]),
                                          st.sampled_from([0.25, 0.5, 1.0, 2.0]), min_size=1, max_size=6),
                          st.integers(0, 10), st.booleans()), min_size=1, max_size=30),
       st.lists(st.tuples(st.sampled_from([f"t{i}" for i in range(12)]), st.sampled_from([0.5, 1.0])), max_size=8),
       st.integers(0, 10), st.booleans())
def test_candidates_equal_the_plain_computation(stories, query, day, dated):
    """Ties in votes included (the weights are few), and more voted stories than candidates."""
    import pipelines.stories.index as index_module

    index = StoryIndex()
    for n, (centroid, story_day, has_date) in enumerate(stories):
        when = T0 + timedelta(days=story_day)
        story = index_module.StoryState(f"s{n:02d}", f"a{n}", None, when, when, 1, set(), {})
        if has_date:
            story.dated_first = story.dated_last = when
        index.add_story(story)
        index.merge_into_centroid(story, centroid)
    time, window = T0 + timedelta(days=day), timedelta(days=2)
    for limit in (3, index_module.MAX_CANDIDATES):
        with pytest.MonkeyPatch.context() as m:
            m.setattr(index_module, "MAX_CANDIDATES", limit)
            found = [s.story_id for s in _candidates(index, query, time, window, dated)]
        assert found == _reference_candidates(index, query, time, window, dated, limit)


@given(st.dictionaries(st.text(max_size=3), st.floats(0.001, 10.0), max_size=20),
       st.dictionaries(st.text(max_size=3), st.floats(0.001, 10.0), max_size=20))
def test_cosine_is_the_plain_sum_over_the_shorter_vector_to_the_last_bit(a, b):
    short, long_ = (b, a) if len(a) > len(b) else (a, b)
    plain = 0
    for term, weight in short.items():
        plain += weight * long_.get(term, 0.0)
    assert cosine(a, b) == plain


_TERMS = st.sampled_from([f"t{i}" for i in range(12)])
_CENTROID = st.dictionaries(_TERMS, st.sampled_from([0.25, 0.5, 1.0, 2.0]), max_size=6)
_OPS = st.lists(st.one_of(
    st.tuples(st.just("add"), _CENTROID, st.integers(0, 10), st.booleans()),
    st.tuples(st.just("merge"), st.integers(0, 50), _CENTROID),
    st.tuples(st.just("prune"), st.integers(0, 10)),
    st.tuples(st.just("query"), st.dictionaries(_TERMS, st.sampled_from([0.5, 1.0, 0.3, 0.0]), min_size=1, max_size=8),
              st.integers(0, 10), st.booleans(), st.integers(0, 50))), max_size=40)


@settings(max_examples=80, deadline=None)
@given(_OPS)
def test_lookups_follow_the_index_through_merges_and_prunes(ops):
    """The index's lookup structures (story slots, cached postings, centroid rows and their vocabulary) are
    updated incrementally; whatever the sequence of changes, lookups answer as the plain computations over
    the stories held do, and the chosen story is the one exact cosines choose, at the threshold too."""
    import pipelines.stories.index as index_module
    from pipelines.stories.assign import _best_story

    index, created = StoryIndex(), 0
    window = timedelta(days=2)
    with pytest.MonkeyPatch.context() as m:
        m.setattr(index_module, "MAX_CANDIDATES", 3)
        m.setattr(index_module, "MAX_POSTING", 4)
        for op in ops:
            if op[0] == "add":
                _, centroid, day, has_date = op
                when = T0 + timedelta(days=day)
                story = index_module.StoryState(f"s{created:02d}", "a", None, when, when, 1, set(), {}, touched=when)
                if has_date:
                    story.dated_first = story.dated_last = when
                created += 1
                index.add_story(story)
                index.merge_into_centroid(story, centroid)
            elif op[0] == "merge" and index.stories:
                story = sorted(index.stories.values(), key=lambda s: s.story_id)[op[1] % len(index.stories)]
                index.merge_into_centroid(story, op[2])
            elif op[0] == "prune":
                index.prune(T0 + timedelta(days=op[1]))
            elif op[0] == "query":
                _, query, day, dated, pick = op
                time, terms = T0 + timedelta(days=day), sorted(query.items())
                found = _candidates(index, terms, time, window, dated)
                assert [s.story_id for s in found] == _reference_candidates(index, terms, time, window, dated, 3)
                slots = index.candidate_slots(terms, time, window, dated)
                stories = [index.story_at(slot) for slot in slots]
                exact = [cosine(query, s.centroid) / (s.norm or 1.0) for s in stories]
                assert index.similarities(slots, terms).tolist() == pytest.approx(exact, abs=1e-12)
                for threshold in ([exact[pick % len(exact)]] if exact else []) + [0.0, 2.0]:
                    plain = max(((score, s) for score, s in zip(exact, stories, strict=True) if score >= threshold),
                                key=lambda x: (x[0], x[1].first_seen, x[1].story_id), default=(None, None))[1]
                    assert _best_story(index, slots, query, threshold) is plain
            held = set().union(*(s.centroid for s in index.stories.values()))
            assert set(index._centroids._ids) == held  # the vocabulary is that of the centroids held


_JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.text(),
                     lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
                     max_leaves=8)


@given(st.dictionaries(st.text(), _JSON, max_size=3), st.lists(st.tuples(st.text(), _JSON), max_size=5))
def test_snapshot_lines_are_read_back_as_written(head, records):
    import tempfile

    with tempfile.TemporaryDirectory() as state_dir:
        state.commit(state_dir, state.write_lines(state_dir, "20250101T000000Z-a", head, iter(records)))
        assert state.load(state_dir, list) == ([head] + [{kind: record} for kind, record in records], [])


def test_the_index_is_saved_a_record_a_line_and_older_one_document_snapshots_are_read(tmp_path):
    import gzip

    index = StoryIndex()
    assign_batch(index, [feat("a", TEXTS["deal"]), feat("b", TEXTS["llama"], 1), feat("c", TEXTS["deal2"], 2)],
                 CFG, T0)
    save_index(str(tmp_path / "new"), "20250101T000000Z-a", index)
    lines = gzip.decompress((tmp_path / "new" / "snapshot-20250101T000000Z-a.json.gz").read_bytes()).splitlines()
    assert len(lines) == 1 + len(index.stories) + len(index.articles)
    assert load_index(str(tmp_path / "new"))[0].to_json() == index.to_json()
    older = index.to_json() | {"format": 3}  # formats 1 to 3: one document
    state.commit(str(tmp_path / "old"), state.write(str(tmp_path / "old"), "20250101T000000Z-a", state.encode(older)))
    assert load_index(str(tmp_path / "old"))[0].to_json() == index.to_json()


def test_band_buckets_hold_one_article_as_its_id_and_empty_when_all_leave():
    from pipelines.stories.index import ArticleState, _Bands

    bands = _Bands()
    signature = feat("a", TEXTS["deal"]).minhash
    a, b = (ArticleState(i, "s", T0, "h", signature) for i in ("a", "b"))
    bands.add(a)
    bands.add(a)  # added twice: still one id
    assert bands.sharing(signature) == {"a"} and all(v == "a" for v in bands._held.values())
    bands.add(b)
    assert bands.sharing(signature) == {"a", "b"}
    bands.remove(a)
    assert bands.sharing(signature) == {"b"} and all(v == "b" for v in bands._held.values())
    bands.remove(b)
    assert bands._held == {} and bands.sharing(signature) == set()
