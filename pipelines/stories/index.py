"""The story index: the stories and articles of the active time window, persisted between runs.

Candidate stories for an article come from an inverted index over each story's top centroid terms:
the article's strongest terms vote with their weights, terms posted by more than ``MAX_POSTING`` stories
(too common to identify one) are skipped, and only the ``MAX_CANDIDATES`` best-voted stories are scored
exactly. Time narrows the candidates only where it is known on both sides: a dated article is compared
with stories whose members' publication dates come within the window of its own, and with stories that
have no dated member; an undated article (its time is only when it was fetched) with every story held.
Candidate originals for near-copy checks come from a MinHash LSH band index. So the work per article is
bounded by constants, whatever the history. The index ages by the runs' clock, not by article times: a
story records when a run last added an article to it (``touched``), and ``prune`` drops the stories (and
their articles) no run has touched since a horizon (the run's start minus the window). So memory is
bounded by what the runs of one window ingest, an article dated in the future cannot empty the index, and
a backfill of old articles still continues its stories in the next run.

Persistence: one snapshot per run through ``pipelines.state`` (Beam's filesystems, a ``CURRENT`` pointer).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import islice

from pipelines import state
from pipelines.stories.features import SIGNATURE_DTYPE, signature, signature_values

# 2 added the stories' dated span (a format-1 snapshot is read as if all members were dated); 3 ages stories
# by the run that last touched them instead of by the newest article (older snapshots: by their last article)
FORMAT_VERSION = 3
POSTING_TERMS = 30  # a story is findable by this many of its strongest centroid terms
CENTROID_TERMS = 120  # a story's centroid keeps this many terms
MAX_POSTING = 500  # a term posted by more active stories than this identifies none of them
MAX_CANDIDATES = 50  # stories scored exactly per article
# LSH over MinHash signatures: 21 bands of 3 values. A pair with shingle Jaccard 0.6 shares a band with
# probability 0.99, a pair at 0.2 with 0.15, unrelated articles almost never.
BANDS, ROWS = 21, 3


@dataclass
class StoryState:
    story_id: str
    representative_id: str
    title: str | None
    first_seen: datetime
    last_seen: datetime
    article_count: int
    sources: set[str]
    centroid: dict[str, float]  # sum of member term vectors, truncated to CENTROID_TERMS
    norm: float = 0.0  # L2 norm of centroid; both are set by set_centroid
    dated_first: datetime | None = None  # earliest and latest publication date of a member; None if none is dated
    dated_last: datetime | None = None
    touched: datetime | None = None  # the start of the last run that added an article (None: read from format < 3)

    def near_in_time(self, time: datetime, window: timedelta) -> bool:
        """Whether a dated article at ``time`` may join: within the window of the dated members, if any."""
        if self.dated_first is None or self.dated_last is None:
            return True
        return self.dated_first - window <= time <= self.dated_last + window

    def set_centroid(self, centroid: dict[str, float]) -> None:
        self.centroid = dict(sorted(centroid.items(), key=lambda kv: (-kv[1], kv[0]))[:CENTROID_TERMS])
        self.norm = sum(w * w for w in self.centroid.values()) ** 0.5

    def top_terms(self, n: int) -> list[str]:
        return list(islice(self.centroid, n))  # set_centroid keeps the centroid in (-weight, term) order


@dataclass
class ArticleState:
    article_id: str
    story_id: str
    time: datetime
    content_hash: str
    minhash: bytes


@dataclass
class StoryIndex:
    stories: dict[str, StoryState] = field(default_factory=dict)
    articles: dict[str, ArticleState] = field(default_factory=dict)
    saved_by: str | None = None  # the run whose snapshot this is (see pipelines.stories.recover)
    _postings: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set), repr=False)
    _by_hash: dict[str, str] = field(default_factory=dict, repr=False)
    _members: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list), repr=False)
    _bands: dict[bytes, set[str]] = field(default_factory=lambda: defaultdict(set), repr=False)

    # -- lookups --------------------------------------------------------------------------------
    def candidate_stories(self, terms: list[tuple[str, float]], time: datetime, window: timedelta,
                          dated: bool = True) -> list[StoryState]:
        """Stories sharing the article's terms and near it in time (when it is ``dated``): the best-voted
        MAX_CANDIDATES, in id order."""
        votes: dict[str, float] = {}
        vote = votes.get
        for term, weight in terms:
            posting = self._postings.get(term)
            if posting and len(posting) <= MAX_POSTING:
                votes.update({story_id: vote(story_id, 0.0) + weight for story_id in posting})
        ranked = sorted([(-v, i) for i, v in votes.items()])  # best-voted first, then by id
        best: list[StoryState] = []
        for _, story_id in ranked:  # time is checked until enough candidates are found, not for every story
            story = self.stories[story_id]
            if not dated or story.near_in_time(time, window):
                best.append(story)
                if len(best) == MAX_CANDIDATES:
                    break
        return sorted(best, key=lambda s: s.story_id)

    def near_copy_candidates(self, minhash: bytes) -> list[ArticleState]:
        """Articles sharing at least one LSH band with the signature, in id order."""
        ids: set[str] = set()
        for key in _band_keys(minhash):
            ids |= self._bands.get(key, set())
        return sorted((self.articles[i] for i in ids), key=lambda a: a.article_id)

    def exact_copy_of(self, content_hash: str) -> ArticleState | None:
        article_id = self._by_hash.get(content_hash)
        return self.articles.get(article_id) if article_id else None

    # -- updates --------------------------------------------------------------------------------
    def add_story(self, story: StoryState) -> None:
        self.stories[story.story_id] = story
        self._post(story)

    def add_article(self, article: ArticleState, source: str, time: datetime, dated: bool,
                    run_time: datetime) -> StoryState:
        """Add an article at ``time`` (its publication date if ``dated``, else when it was fetched) to its
        story, by a run that started at ``run_time``."""
        story = self.stories[article.story_id]
        story.touched = max(story.touched or run_time, run_time)
        story.article_count += 1
        story.sources.add(source)
        story.first_seen = min(story.first_seen, time)
        story.last_seen = max(story.last_seen, time)
        if dated:
            story.dated_first = min(story.dated_first or time, time)
            story.dated_last = max(story.dated_last or time, time)
        self._index_article(article)
        return story

    def merge_into_centroid(self, story: StoryState, terms: dict[str, float]) -> None:
        self._unpost(story)
        centroid = dict(story.centroid)
        for term, weight in terms.items():
            centroid[term] = centroid.get(term, 0.0) + weight
        story.set_centroid(centroid)
        self._post(story)

    def prune(self, horizon: datetime) -> int:
        """Drop the stories (and their articles) no run has touched since ``horizon``; returns how many."""
        old = [s for s in self.stories.values() if (s.touched or s.last_seen) < horizon]
        for story in old:
            self._unpost(story)
            del self.stories[story.story_id]
            for article_id in self._members.pop(story.story_id, []):
                article = self.articles.pop(article_id, None)
                if article is None:
                    continue
                if self._by_hash.get(article.content_hash) == article_id:
                    del self._by_hash[article.content_hash]
                for key in _band_keys(article.minhash):
                    bucket = self._bands.get(key)
                    if bucket is not None:
                        bucket.discard(article_id)
                        if not bucket:
                            del self._bands[key]
        return len(old)

    def _index_article(self, article: ArticleState) -> None:
        self.articles[article.article_id] = article
        self._by_hash.setdefault(article.content_hash, article.article_id)
        self._members[article.story_id].append(article.article_id)
        for key in _band_keys(article.minhash):
            self._bands[key].add(article.article_id)

    def _post(self, story: StoryState) -> None:
        for term in story.top_terms(POSTING_TERMS):
            self._postings[term].add(story.story_id)

    def _unpost(self, story: StoryState) -> None:
        for term in story.top_terms(POSTING_TERMS):
            posting = self._postings.get(term)
            if posting is not None:
                posting.discard(story.story_id)
                if not posting:
                    del self._postings[term]

    # -- persistence ----------------------------------------------------------------------------
    def to_json(self) -> dict:
        return {
            "format": FORMAT_VERSION,
            "saved_by": self.saved_by,
            "stories": [
                {"story_id": s.story_id, "representative_id": s.representative_id, "title": s.title,
                 "first_seen": _iso(s.first_seen), "last_seen": _iso(s.last_seen),
                 "dated_first": _iso(s.dated_first), "dated_last": _iso(s.dated_last), "touched": _iso(s.touched),
                 "article_count": s.article_count, "sources": sorted(s.sources), "centroid": s.centroid}
                for s in sorted(self.stories.values(), key=lambda s: s.story_id)
            ],
            "articles": [
                {"article_id": a.article_id, "story_id": a.story_id, "time": _iso(a.time),
                 "content_hash": a.content_hash, "minhash": signature_values(a.minhash)}
                for a in sorted(self.articles.values(), key=lambda a: (a.time, a.article_id))
            ],
        }

    @classmethod
    def from_json(cls, doc: dict) -> StoryIndex:
        if doc.get("format") not in (1, 2, FORMAT_VERSION):
            raise ValueError(f"unsupported story index format {doc.get('format')!r}")
        index = cls(saved_by=doc.get("saved_by"))
        for s in doc["stories"]:
            story = StoryState(
                story_id=s["story_id"], representative_id=s["representative_id"], title=s["title"],
                first_seen=_parse(s["first_seen"]), last_seen=_parse(s["last_seen"]),
                article_count=s["article_count"], sources=set(s["sources"]), centroid={},
                # format 1 had no dated span: every member counted as dated
                dated_first=_maybe(s.get("dated_first", s["first_seen"])),
                dated_last=_maybe(s.get("dated_last", s["last_seen"])), touched=_maybe(s.get("touched")))
            story.set_centroid(s["centroid"])
            index.add_story(story)
        for a in doc["articles"]:
            index._index_article(ArticleState(a["article_id"], a["story_id"], _parse(a["time"]),
                                              a["content_hash"], signature(a["minhash"])))
        return index


def _band_keys(minhash: bytes) -> list[bytes]:
    """Band b's key: b, then the band's ROWS values (their bytes)."""
    width = ROWS * SIGNATURE_DTYPE.itemsize
    return [bytes((b,)) + minhash[b * width:(b + 1) * width] for b in range(BANDS)]


def load_index(state_dir: str) -> StoryIndex:
    """The latest snapshot under ``state_dir``, or an empty index on the first run."""
    doc = state.load(state_dir)
    return StoryIndex() if doc is None else StoryIndex.from_json(doc)


def encode_index(index: StoryIndex) -> bytes:
    return state.encode(index.to_json())


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _parse(value: str) -> datetime:
    return datetime.fromisoformat(value)


def _maybe(value: str | None) -> datetime | None:
    return _parse(value) if value else None
