"""Articles wait on disk between extraction and the write; only refs and placements move through the run."""

import io
from dataclasses import replace
from datetime import UTC, datetime

import apache_beam as beam
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from pipelines.records import Article, ArticleRef, Assignment, Run
from pipelines.staging import (
    CHUNK,
    Placement,
    StageArticles,
    UnstageArticles,
    encode_record,
    in_chunks,
    read_record,
    staged_features,
)
from pipelines.stories.assign import features_of
from pipelines.text import content_hash

RUN = Run("20250614T000000Z-stage", datetime(2025, 6, 14, tzinfo=UTC))


def article(n: int, text: str | None = None) -> Article:
    text = text or f"Article number {n} tells of the harbour bridge that reopened on day {n}. " * 3
    url = f"https://news.example/{n}"
    return Article(f"id{n}", url, url, url, "https://news.example/rss", "news.example", f"Title {n}", (),
                   datetime(2025, 6, 13, n % 24, tzinfo=UTC), RUN.started_at, "en", None, text, len(text.split()),
                   content_hash(text))


def test_read_record_finds_each_record_at_its_offset():
    handle = io.BytesIO()
    written = [article(n, text="Ünïcödé 東京 " * n + "x") for n in range(6)]
    offsets = []
    for a in written:
        offsets.append(handle.tell())
        handle.write(encode_record(a))
    for n in (4, 1, 5, 0):
        assert read_record(handle, offsets[n]) == written[n]


def test_a_staged_file_cut_short_is_an_error():
    handle = io.BytesIO()
    handle.write(encode_record(article(1)))
    truncated = io.BytesIO(handle.getvalue()[:-10])
    with pytest.raises(EOFError):
        read_record(truncated, 0)
    with pytest.raises(EOFError):
        read_record(handle, handle.tell())


def test_placements_come_in_file_order_a_chunk_at_a_time():
    placements = [Placement(offset, f"u{offset}", "f", "s", None) for offset in range(CHUNK * 2 + 5, 0, -1)]
    chunks = list(in_chunks(("file", placements)))
    assert [len(c) for _, c in chunks] == [CHUNK, CHUNK, 5]
    assert [p.offset for _, c in chunks for p in c] == sorted(p.offset for p in placements)


def _with_features(a: Article):
    return a, features_of(a, RUN)


def _read_back(ref: ArticleRef):
    (features,) = staged_features([ref], [])
    return ref.article_id, features


def test_stage_then_unstage_gives_back_the_assigned_articles_with_their_stories(tmp_path):
    articles = [article(n) for n in range(CHUNK + 40)]
    # id7 has no assignment (its story step failed): it must not be written
    assignments = [Assignment(a.article_id, f"story-{int(a.article_id[2:]) % 3}",
                              "id0" if a.article_id == "id3" else None)
                   for a in articles if a.article_id != "id7"]
    expected = [a.with_story(s.story_id, s.duplicate_of) for a, s in zip(
        [a for a in articles if a.article_id != "id7"], assignments, strict=True)]
    with TestPipeline() as p:
        staged = (p | "Articles" >> beam.Create(articles) | beam.Map(_with_features)
                  | StageArticles(str(tmp_path / "staged")))
        refs = staged["main"]
        # read after a shuffle, as in a run: a staged file is complete once its bundle has ended
        assert_that(refs | beam.Reshuffle() | beam.Map(_read_back),
                    equal_to([(a.article_id, features_of(a, RUN)) for a in articles]), label="features read back")
        out = ({"refs": refs, "assignments": p | "Assignments" >> beam.Create(assignments)}
               | UnstageArticles())
        assert_that(out["main"], equal_to(expected), label="articles")
        assert_that(out["rejects"], equal_to([]), label="no rejects")
    assert list((tmp_path / "staged").iterdir())  # the articles went through files


def test_an_unreadable_staged_file_rejects_the_articles_placed_in_it(tmp_path):
    articles = [article(n) for n in range(3)]
    with TestPipeline() as p:
        refs = (p | "Articles" >> beam.Create(articles) | beam.Map(_with_features)
                | StageArticles(str(tmp_path / "staged")))["main"]
        # refs pointing into a file that does not hold them
        moved = refs | beam.Map(lambda r: r.__class__(r.article_id, r.url, r.feed_url, r.published_at,
                                                       str(tmp_path / "gone.articles"), r.offset,
                                                       r.features_offset))
        assignments = p | "Assignments" >> beam.Create([Assignment(a.article_id, "s") for a in articles])
        out = {"refs": moved, "assignments": assignments} | UnstageArticles()
        assert_that(out["main"], equal_to([]), label="nothing written")
        assert_that(out["rejects"] | beam.Map(lambda r: (r.url, r.stage, r.reason)),
                    equal_to([(a.url, "write", "internal_error") for a in articles]), label="rejects")


def _stage_one_per_file(tmp_path, count: int) -> list[ArticleRef]:
    refs = []
    for n in range(count):
        path = tmp_path / f"{n}.articles"
        a = article(n)
        head = encode_record(a)
        path.write_bytes(head + encode_record(features_of(a, RUN)))
        refs.append(ArticleRef(a.article_id, a.url, a.feed_url, a.published_at, str(path), 0, len(head)))
    return refs


def test_staged_features_come_back_in_the_order_asked_a_window_at_a_time(tmp_path):
    refs = _stage_one_per_file(tmp_path, 7)
    order = [refs[n] for n in (3, 0, 6, 1, 5, 2, 4)]
    failed: list = []
    got = list(staged_features(order, failed, window=3))
    assert [f.article_id for f in got] == [r.article_id for r in order] and failed == []
    assert got[1] == features_of(article(0), RUN)


def test_staged_features_that_cannot_be_read_fail_alone(tmp_path):
    good, moved, wrong = _stage_one_per_file(tmp_path, 3)
    moved = replace(moved, file=str(tmp_path / "gone.articles"))
    wrong = replace(wrong, features_offset=0)  # the article's record, not its features
    failed: list = []
    got = list(staged_features([moved, good, wrong], failed))
    assert [f.article_id for f in got] == [good.article_id]
    assert [(ref.article_id, "holds no features" in why) for ref, why in failed] == [("id1", False), ("id2", True)]


def test_a_staged_file_failing_as_it_closes_fails_each_article_once(tmp_path, monkeypatch):
    good, wrong = _stage_one_per_file(tmp_path, 2)
    wrong = replace(wrong, file=good.file, features_offset=0)  # in the same file, pointing at an article

    class ClosesBadly(io.BytesIO):
        def close(self):
            raise OSError("connection reset")

    monkeypatch.setattr("pipelines.staging.FileSystems.open",
                        lambda path: ClosesBadly((tmp_path / "0.articles").read_bytes()))
    failed: list = []
    got = list(staged_features([good, wrong], failed))
    assert [f.article_id for f in got] == [good.article_id]
    assert [ref.article_id for ref, _ in failed] == [wrong.article_id]
