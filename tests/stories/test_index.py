from datetime import timedelta

from pipelines.config import StoriesConfig
from pipelines.stories.assign import assign_batch
from pipelines.stories.index import StoryIndex, encode_index, load_index, save_index
from tests.stories.helpers import TEXTS, feat

CFG = StoriesConfig()


def test_snapshot_roundtrip_through_filesystems(tmp_path):
    index = StoryIndex()
    assign_batch(index, [feat("a", TEXTS["deal"]), feat("b", TEXTS["llama"], 1)], CFG)
    state = str(tmp_path / "state")
    assert load_index(state).stories == {}  # first run: empty
    for run_id in ("20250101T000000Z-a", "20250102T000000Z-b", "20250103T000000Z-c", "20250104T000000Z-d"):
        save_index(state, run_id, encode_index(index))
    loaded = load_index(state)
    assert loaded.to_json() == index.to_json()
    assert sorted(p.name for p in (tmp_path / "state").iterdir()) == [
        "CURRENT", "index-20250102T000000Z-b.json.gz", "index-20250103T000000Z-c.json.gz",
        "index-20250104T000000Z-d.json.gz"]
    # the loaded index answers lookups like the original
    terms = [t for t, _ in feat("x", TEXTS["deal2"], 2).terms]
    assert [s.story_id for s in loaded.candidate_stories(terms, feat("x", "", 2).time, timedelta(days=3))] == \
        [s.story_id for s in index.candidate_stories(terms, feat("x", "", 2).time, timedelta(days=3))]


def test_prune_drops_stories_outside_the_window():
    index = StoryIndex()
    assign_batch(index, [feat("old", TEXTS["llama"], 0)], CFG)
    assign_batch(index, [feat("new", TEXTS["weather"], 24 * 5)], CFG)  # 5 days later, 3-day window
    assert [s.representative_id for s in index.stories.values()] == ["new"]
    assert set(index.articles) == {"new"}
    assert index.exact_copy_of(feat("old", TEXTS["llama"]).content_hash) is None
    assert all(index._postings.values())  # no empty postings left behind


def test_candidates_respect_time_window():
    index = StoryIndex()
    assign_batch(index, [feat("a", TEXTS["deal"], 0)], CFG)
    terms = [t for t, _ in feat("b", TEXTS["deal2"]).terms]
    assert index.candidate_stories(terms, feat("b", "", 24).time, timedelta(days=3))
    assert not index.candidate_stories(terms, feat("b", "", 24 * 4).time, timedelta(days=3))
