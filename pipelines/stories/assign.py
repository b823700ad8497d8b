"""The AssignStories stage: an article's features -> its ``story_id`` and ``duplicate_of``, plus Story rows.

Three levels, decided in this order for each article:
1. exact copy: same normalised text as an article in the index -> ``duplicate_of`` it, its story;
2. near-identical copy: 5-word-shingle Jaccard >= ``near_duplicate_threshold`` with an indexed article
   (found through MinHash LSH) -> ``duplicate_of`` the most similar (earliest on ties), its story;
3. story: cosine similarity of the article's term vector with a candidate story's centroid; the best
   story at or above ``threshold`` is joined, else the article starts a new story. Candidates are near
   the article in time where both have publication dates (see ``pipelines.stories.index``): a fetch
   time says when we saw an article, not when its event happened.

Assignment is online: articles are taken one at a time in (time, article_id) order against the
index of earlier runs plus the articles already assigned in this run, and earlier assignments are
never rewritten. Feature extraction (``StoryFeatures``) runs in parallel, where articles are extracted,
and the features wait on disk with their articles (``pipelines.staging``); the assignment itself runs once
per run on one worker (a single-key GroupByKey of the run's article refs, not its articles or features),
which is what makes it deterministic whatever the bundle order. It reads the features back as their turn
comes, a window of articles at a time, so it holds the index, the run's refs and one window's features.
Its cost per article depends on the window's candidates, not on the history. An article whose
assignment raises is a reject (``pipelines.failures``); the index is changed only once its decision is made.
The index ages by the runs' clock: after a run it keeps the stories that runs added to within
``window_days`` before its start (see ``pipelines.stories.index``).

A stream assigns with ``AssignStoriesKeyed``: the same online assignment, once per poll, in poll order, with
the name of the index's snapshot as keyed state (see ``_AssignKeyedFn``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any

import apache_beam as beam
import numpy as np
from apache_beam import coders
from apache_beam.transforms import userstate
from apache_beam.transforms.window import FixedWindows, GlobalWindows

from pipelines import metrics, state
from pipelines.config import StoriesConfig
from pipelines.failures import Guarded, attempt, describe, rejects_for
from pipelines.records import Article, ArticleRef, Assignment, Run, Story
from pipelines.staging import staged_features
from pipelines.stories.agreement import agreement
from pipelines.stories.features import ArticleFeatures, article_features, cosine, jaccard
from pipelines.stories.index import ArticleState, StoryIndex, StoryState, load_index, read_index, write_index
from pipelines.stories.recover import read_rows, restore, unindexed_files
from pipelines.urls import stable_id

STORIES = "stories"
CURRENT = "current"
INDEX = "index"
REJECTS = "rejects"
QUERY_TERMS = 30  # an article looks up candidate stories by this many of its strongest terms
ROUNDING = 1e-9  # far above the float error of a cosine computed in another order (60 products: < 1e-14)


@dataclass
class AssignResult:
    assignments: list[Assignment] = field(default_factory=list)
    stories: list[Story] = field(default_factory=list)  # every story the batch touched, after it
    counts: Counter = field(default_factory=Counter)
    failed: list[tuple[Any, str]] = field(default_factory=list)  # (article's features or ref, what went wrong)


def article_time(published_at: datetime | None, run: Run) -> datetime:
    """The time an article is placed at: when it was published, else the start of the run that found it."""
    return published_at or run.started_at


def assign_batch(index: StoryIndex, batch: Iterable[ArticleFeatures], config: StoriesConfig,
                 now: datetime) -> AssignResult:
    """Assign a run's articles in (time, article_id) order, updating ``index`` in place.

    ``now`` is the run's start: stories record it when they gain an article, and afterwards the index keeps
    the stories touched within the window before it. The returned story rows are taken before pruning.
    """
    return assign_ordered(index, sorted(batch, key=lambda f: (f.time, f.article_id)), config, now)


def assign_ordered(index: StoryIndex, ordered: Iterable[ArticleFeatures], config: StoriesConfig, now: datetime,
                   result: AssignResult | None = None) -> AssignResult:
    """``assign_batch`` for articles given in (time, article_id) order, taken one at a time (``ordered``
    may read them as it goes, and add its failures to ``result``)."""
    window = timedelta(days=config.window_days)
    existing = set(index.stories)
    result = AssignResult() if result is None else result
    touched: dict[str, None] = {}
    for feat in ordered:
        known = index.articles.get(feat.article_id)
        if known is not None:  # assigned by an earlier run that did not store it (a failed write, a lost
            result.assignments.append(Assignment(feat.article_id, known.story_id))  # file): stored now
            continue
        assignment, error = attempt(partial(_assign_one, index, feat, config, window, now))
        if assignment is None:
            result.failed.append((feat, error or "no assignment"))
            continue
        result.assignments.append(assignment)
        touched.setdefault(assignment.story_id, None)
        if assignment.duplicate_kind:
            result.counts[f"duplicates_{assignment.duplicate_kind}"] += 1
    result.stories = story_rows(index, touched)
    result.counts["stories_new"] = sum(1 for s in touched if s not in existing)
    result.counts["stories_continued"] = sum(1 for s in touched if s in existing)
    index.prune(now - window)
    return result


def _assign_one(index: StoryIndex, feat: ArticleFeatures, config: StoriesConfig, window: timedelta,
                now: datetime) -> Assignment:
    # decide, reading the index only ...
    original = index.exact_copy_of(feat.content_hash)
    kind = "exact" if original else None
    if original is None:
        original = _near_copy_of(index, feat, config.near_duplicate_threshold)
        kind = "near" if original else None
    # a copy whose original's story has left the window is assigned like any other article
    story = index.stories.get(original.story_id) if original else None
    vector, pairs = None, []
    if story is None:
        original, kind = None, None
        pairs = feat.vector()
        vector = dict(pairs)
        candidates = index.candidate_slots(pairs[:QUERY_TERMS], feat.time, window, feat.dated)
        story = _best_story(index, candidates, vector, config.threshold)

    # ... then record the decision
    if vector is not None:
        story = story or _new_story(index, feat, now)
        index.merge_into_centroid(story, vector)
    assert story is not None
    index.add_article(ArticleState(feat.article_id, story.story_id, feat.time, feat.content_hash, feat.minhash),
                      feat.source, feat.time, feat.dated, now, copy=kind is not None, title=feat.title, terms=pairs,
                      figures=feat.figures)
    return Assignment(feat.article_id, story.story_id,
                      original.article_id if original else None, kind)


def _best_story(index: StoryIndex, candidates: np.ndarray, vector: dict[str, float],
                threshold: float) -> StoryState | None:
    """The candidate (a story's slot in the index) most similar to ``vector``, then the earliest, then by
    id, if at or above ``threshold``.

    The index scores all candidates at once, to within float rounding (about 1e-15); the few within
    ``ROUNDING`` of the best are scored again exactly, so the choice is the one exact scores give."""
    if not len(candidates):
        return None
    near = index.similarities(candidates, vector.items())
    top = near.max()
    if top < threshold - ROUNDING:
        return None
    contenders = [index.story_at(slot) for slot in candidates[near >= top - ROUNDING].tolist()]
    scored = [(cosine(vector, s.centroid) / (s.norm or 1.0), s) for s in contenders]
    score, best = max(scored, key=lambda x: (x[0], x[1].first_seen, x[1].story_id))
    return best if score >= threshold else None


def _new_story(index: StoryIndex, feat: ArticleFeatures, now: datetime) -> StoryState:
    story = StoryState(story_id=stable_id("story", feat.article_id), representative_id=feat.article_id,
                       title=feat.title, first_seen=feat.time, last_seen=feat.time, article_count=0,
                       sources=set(), centroid={}, born=now.date().isoformat())
    index.add_story(story)
    return story


def _near_copy_of(index: StoryIndex, feat: ArticleFeatures, threshold: float) -> ArticleState | None:
    """The most similar indexed article at or above threshold; earliest on ties."""
    scored = [(jaccard(feat.minhash, m.minhash), m) for m in index.near_copy_candidates(feat.minhash)]
    above = [(score, m) for score, m in scored if score >= threshold]
    return min(above, key=lambda x: (-x[0], x[1].time, x[1].article_id))[1] if above else None


def story_rows(index: StoryIndex, story_ids: Iterable[str]) -> list[Story]:
    rows = []
    for story_id in story_ids:
        s = index.stories.get(story_id)
        if s is not None:
            values = agreement(s.figures)
            disputes = len({(v.kind, v.unit, v.subject) for v in values if v.disputed})
            rows.append(Story(s.story_id, s.title, s.representative_id, s.article_count, tuple(sorted(s.sources)),
                              s.first_seen, s.last_seen, s.first_article_id or s.representative_id,
                              s.original_count, len(s.sources), values, disputes))
    return rows


def features_of(article: Article, run: Run) -> ArticleFeatures:
    return article_features(article.article_id, article.source, article.title, article.text, article.language,
                            article_time(article.published_at, run), article.content_hash,
                            dated=article.published_at is not None, url=article.url, feed_url=article.feed_url,
                            figures=article.figures)


def _staged_features(refs: Iterable[ArticleRef], run: Run, failed: list[tuple[Any, str]]) -> Iterator[ArticleFeatures]:
    """The refs' features in (time, article_id) order, read back from the staged files as they are needed; a
    ref whose features cannot be read goes to ``failed``."""
    return staged_features(sorted(refs, key=lambda r: (article_time(r.published_at, run), r.article_id)), failed)


def _head(state_dir: str) -> tuple[str | None, bool]:
    """(the run that saved the index in force, whether it holds stories), from its first line only."""
    head, _ = state.load(state_dir, lambda lines: next(lines, None))
    if not isinstance(head, dict):
        return None, False
    return head.get("saved_by"), bool(head.get("stories", True))  # formats < 4: the document holds the stories


class _AssignFn(beam.DoFn):
    """Runs once per run with every new article's ref; emits assignments, stories, the new index.

    The index is first caught up with articles that interrupted runs stored but never indexed
    (``pipelines.stories.recover``), when the output holding them is given.
    """

    def __init__(self, config: StoriesConfig, state_dir: str, run: Run, output: str | None, all_stories: bool):
        self._config, self._state_dir, self._run, self._output = config, state_dir, run, output
        self._all_stories = all_stories

    def _unindexed(self, saved_by: str | None, held: bool) -> list[str]:
        if self._output is None:
            return []
        return unindexed_files(self._output, saved_by, held, self._run.run_id, self._run.started_at,
                               timedelta(days=self._config.window_days))

    def process(self, keyed: tuple[None, Iterable[ArticleRef | str]]) -> Iterable:
        refs = [r for r in keyed[1] if isinstance(r, ArticleRef)]  # and the run's tick (``AssignStories``)
        if not refs and not self._all_stories and not self._unindexed(*_head(self._state_dir)):
            return ()  # nothing to assign or restore: the index and the stories stay as they are
        return self._assign(refs)

    def _assign(self, refs: list[ArticleRef]) -> Iterator:
        index, unreadable = load_index(self._state_dir)
        metrics.inc("state_snapshots_unreadable", len(unreadable))
        if self._output is not None:
            files = self._unindexed(index.saved_by, bool(index.stories))
            metrics.inc("articles_restored_to_index", restore(index, read_rows(files), self._run.started_at))
        result = AssignResult()
        assign_ordered(index, _staged_features(refs, self._run, result.failed), self._config,
                       self._run.started_at, result)
        if self._all_stories:  # the rows of a stories file set aside: every story held is written again
            touched = {s.story_id for s in result.stories}
            result.stories += story_rows(index, (s for s in index.stories if s not in touched))
        current, snapshot = self._commit_later(index, result, self._run)
        del index  # the run's outputs are emitted without it
        yield from self._outputs(result, current, snapshot)

    def _commit_later(self, index: StoryIndex, result: AssignResult, run: Run) -> tuple[list[tuple[str, Story]], str]:
        """The stories_current rows (creation date, Story) of the stories the run changed, including those it
        restored (``touched`` is its start), and the name of the index's snapshot, written now to be committed
        once the articles are written."""
        rows = {s.story_id: s for s in result.stories}
        restored = [s for s, st in index.stories.items() if st.touched == run.started_at and s not in rows]
        rows.update((s.story_id, s) for s in story_rows(index, restored))
        current = [(index.stories[s].born or run.ingest_date, row) for s, row in sorted(rows.items())]
        index.saved_by = run.run_id
        return current, write_index(self._state_dir, index)

    def _outputs(self, result: AssignResult, current: list[tuple[str, Story]], snapshot: str) -> Iterator:
        yield from result.assignments
        for story in result.stories:
            yield beam.pvalue.TaggedOutput(STORIES, story)
        for born_story in current:
            yield beam.pvalue.TaggedOutput(CURRENT, born_story)
        for article, detail in result.failed:
            for reject in rejects_for(article, "stories", detail):
                yield beam.pvalue.TaggedOutput(REJECTS, reject)
        yield beam.pvalue.TaggedOutput(INDEX, snapshot)
        for name, n in result.counts.items():
            yield from self._count(name, n)

    def _count(self, name: str, n: int) -> Iterator:
        metrics.inc(name, n)
        return iter(())


def _with_features(article: Article, run: Run,
                   timestamp: Any = beam.DoFn.TimestampParam) -> tuple[Article, ArticleFeatures]:
    return article, features_of(article, run.at(timestamp))


class StoryFeatures(beam.PTransform):
    """Article -> ``main`` ((Article, ArticleFeatures)) and ``rejects`` (articles whose features failed, stage
    ``stories``). Features are computed where the article is extracted, in parallel, so the steps after it
    can carry them instead of the article (``pipelines.staging``)."""

    def __init__(self, run: Run):
        super().__init__()
        self._run = run

    def expand(self, articles):
        return articles | "Features" >> Guarded(beam.Map(_with_features, self._run), "stories")


class AssignStories(beam.PTransform):
    """ArticleRef (of staged articles) -> ``assignments`` (Assignment), ``stories`` (Story), ``current`` ((the
    date of the run that created it, Story) for each story changed, ``pipelines.current``), ``index`` (the file
    name of the new index's snapshot, written under ``state_dir``, to commit) and ``rejects`` (articles whose
    assignment failed).

    An article the index already holds (stored articles never get here) keeps the story it was given. With
    ``all_stories``, every story the index holds gets a row, not only those the run touched.
    """

    def __init__(self, config: StoriesConfig, state_dir: str, run: Run, output: str | None = None,
                 all_stories: bool = False):
        super().__init__()
        self._config, self._state_dir, self._run, self._output = config, state_dir, run, output
        self._all_stories = all_stories

    def expand(self, refs):
        # a tick makes the step run in a run without new articles too, to restore what an interrupted run stored
        tick = refs.pipeline | "Tick" >> beam.Create(["tick"])
        return (
            (refs, tick)
            | "RefsAndTick" >> beam.Flatten()
            | "OneGroup" >> beam.WithKeys(lambda _: None)
            | "Gather" >> beam.GroupByKey()
            | "Assign" >> Guarded(beam.ParDo(_AssignFn(self._config, self._state_dir, self._run, self._output,
                                                       self._all_stories)),
                                  "stories", STORIES, CURRENT, INDEX, REJECTS, main="assignments")
        )


class _AssignKeyedFn(_AssignFn):
    """A stream's story step: once per poll with the poll's new articles, in one key, so polls are assigned one
    after another, in order, against the index the previous poll left.

    The keyed state holds the name of the index's latest snapshot, written at every poll (and committed by the
    poll's commit, once its datasets are written); the index itself stays decoded in the worker while the name
    in state is the one it holds, so a poll neither decodes nor passes the index through the runner. Another
    worker, or the first poll, reads it from its snapshot; the first poll of a stream reads the committed
    index and catches it up with what interrupted runs stored (``pipelines.stories.recover``)."""

    SNAPSHOT = userstate.ReadModifyWriteStateSpec("index_snapshot", coders.StrUtf8Coder())

    def __init__(self, config: StoriesConfig, state_dir: str, stream: Run, output: str):
        super().__init__(config, state_dir, stream, output, all_stories=False)
        self._held: tuple[str, StoryIndex] | None = None

    def process(self, keyed: tuple[None, Iterable[tuple[Article, ArticleFeatures]]],  # type: ignore[override]
                timestamp=beam.DoFn.TimestampParam, snapshot=beam.DoFn.StateParam(SNAPSHOT)) -> Iterator:
        articles = list(keyed[1])
        try:
            outputs = list(self._poll(articles, self._run.at(timestamp), snapshot))
        except OSError:  # the state cannot be read or written (a full disk): the stream fails, as a run does
            raise
        except Exception as e:  # the mechanism itself: the poll's articles are rejects, the index is unchanged
            outputs = [beam.pvalue.TaggedOutput(REJECTS, r) for a, _ in articles
                       for r in rejects_for(a, "stories", describe(e))]
        yield from outputs

    def _poll(self, articles: list[tuple[Article, ArticleFeatures]], run: Run, snapshot) -> Iterator:
        name, held, self._held = snapshot.read(), self._held, None  # what a failed poll changed is not held
        if name is not None:
            index = held[1] if held is not None and held[0] == name else read_index(self._state_dir, name)
        else:
            index, unreadable = load_index(self._state_dir)
            yield metrics.counted("state_snapshots_unreadable", len(unreadable))
            assert self._output is not None
            files = unindexed_files(self._output, index.saved_by, bool(index.stories), run.run_id, run.started_at,
                                    timedelta(days=self._config.window_days))
            yield metrics.counted("articles_restored_to_index", restore(index, read_rows(files), run.started_at))
        features = sorted((f for _, f in articles), key=lambda f: (f.time, f.article_id))
        result = assign_ordered(index, features, self._config, run.started_at)
        current, written = self._commit_later(index, result, run)
        yield from self._outputs(result, current, written)
        snapshot.write(written)
        self._held = (written, index)

    def _count(self, name: str, n: int) -> Iterator:
        yield metrics.counted(name, n)


class AssignStoriesKeyed(beam.PTransform):
    """A stream's AssignStories: (Article, ArticleFeatures), each timestamped with its poll -> the outputs of
    ``AssignStories`` (for each poll, in its window's time) and ``counts``."""

    def __init__(self, config: StoriesConfig, state_dir: str, stream: Run, output: str):
        super().__init__()
        self._config, self._state_dir, self._stream, self._output = config, state_dir, stream, output

    def expand(self, featured):
        return (
            featured
            | "ByPoll" >> beam.WindowInto(FixedWindows(1))
            | "OneKey" >> beam.WithKeys(lambda _: "stories")
            | "Gather" >> beam.GroupByKey()
            | "AcrossPolls" >> beam.WindowInto(GlobalWindows())
            | "Assign" >> beam.ParDo(_AssignKeyedFn(self._config, self._state_dir, self._stream, self._output))
            .with_outputs(STORIES, CURRENT, INDEX, REJECTS, metrics.COUNTS, main="assignments")
        )
