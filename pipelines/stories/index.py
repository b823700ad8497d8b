"""The story index: the stories and articles of the active time window, persisted between runs.

Candidate stories for an article come from an inverted index over each story's top centroid terms:
the article's strongest terms vote with their weights, terms posted by more than ``MAX_POSTING`` stories
(too common to identify one) are skipped, and only the ``MAX_CANDIDATES`` best-voted stories are scored
exactly. Time narrows the candidates only where it is known on both sides: a dated article is compared
with stories whose members' publication dates come within the window of its own, and with stories that
have no dated member; an undated article (its time is only when it was fetched) with every story held.
Candidate originals for near-copy checks come from a MinHash LSH band index. So the work per article is
bounded by constants, whatever the history. The voting, the time filter and the candidates' similarities
are computed in numpy over small integer "slots" standing for the stories held (postings hold slots, the
centroids are rows of a matrix), with the same results as the plain computations (``candidate_slots``
and ``similarities`` say how). The index ages by the runs' clock, not by article times: a
story records when a run last added an article to it (``touched``), and ``prune`` drops the stories (and
their articles) no run has touched since a horizon (the run's start minus the window). So memory is
bounded by what the runs of one window ingest, an article dated in the future cannot empty the index, and
a backfill of old articles still continues its stories in the next run.

Persistence: one snapshot per run through ``pipelines.state`` (Beam's filesystems, a ``CURRENT`` pointer).
"""

from __future__ import annotations

import sys
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from itertools import islice
from operator import itemgetter, mul

import numpy as np

from pipelines import state
from pipelines.figures import Figure, from_row, to_row
from pipelines.stories.features import SIGNATURE_DTYPE, signature, signature_values

# 2 added the stories' dated span (a format-1 snapshot is read as if all members were dated); 3 ages stories
# by the run that last touched them instead of by the newest article (older snapshots: by their last article);
# 4 is written as JSON Lines, a story or an article per line, where older formats are one document; 5 adds
# what the story rows of schema 3.0 need: originals, the first article, representative candidates, figures
FORMAT_VERSION = 5
POSTING_TERMS = 30  # a story is findable by this many of its strongest centroid terms
CENTROID_TERMS = 120  # a story's centroid keeps this many terms
MAX_POSTING = 500  # a term posted by more active stories than this identifies none of them
MAX_CANDIDATES = 50  # stories scored per article
MEMBER_TERMS = 20  # a representative candidate keeps this many of its strongest terms
MAX_MEMBERS = 100  # a story's first originals are its representative candidates
MAX_STORY_FIGURES = 600  # a story keeps its members' first figures
# LSH over MinHash signatures: 21 bands of 3 values. A pair with shingle Jaccard 0.6 shares a band with
# probability 0.99, a pair at 0.2 with 0.15, unrelated articles almost never.
BANDS, ROWS = 21, 3
_EPOCH, _MICROSECOND = datetime(1970, 1, 1, tzinfo=UTC), timedelta(microseconds=1)
_UNDATED = (-(2**62), 2**62)  # an undated story's span, in microseconds: near any time


@dataclass(slots=True)
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
    original_count: int = 0  # members that are not copies of another
    first_article_id: str | None = None  # the earliest member: dated before undated, then by time, then id
    first_article_key: tuple[bool, datetime] | None = None  # (undated, time) of first_article_id
    members: list[Member] = field(default_factory=list)  # representative candidates: the first originals
    figures: list[tuple[str, Figure]] = field(default_factory=list)  # (outlet, figure) its members state
    born: str | None = None  # the start date of the run that created it: its stories_current partition

    def set_centroid(self, centroid: dict[str, float]) -> None:
        # in (-weight, term) order: sorted by term, then (stably) by weight, descending
        self.centroid = dict(sorted(sorted(centroid.items()), key=itemgetter(1), reverse=True)[:CENTROID_TERMS])
        weights = self.centroid.values()
        self.norm = sum(map(mul, weights, weights)) ** 0.5

    def top_terms(self, n: int) -> list[str]:
        return list(islice(self.centroid, n))  # set_centroid keeps the centroid in (-weight, term) order

    def choose_representative(self) -> None:
        """The candidate nearest the story's centre (the cosine of its terms with the centroid), then the
        earliest, then by id: the version the others agree with most. Candidates without a title are passed
        over while one has a title."""
        titled = [m for m in self.members if m.title] or self.members
        if not titled:
            return
        norm = self.norm or 1.0
        best = max(titled, key=lambda m: (round(m.score(self.centroid) / norm, 9), -_micros(m.time),
                                          _reversed(m.article_id)))
        self.representative_id, self.title = best.article_id, best.title


@dataclass(frozen=True, slots=True)
class Member:
    """A representative candidate: an original member's title, time and strongest terms."""

    article_id: str
    title: str | None
    time: datetime
    terms: tuple[tuple[str, float], ...]

    def score(self, centroid: dict[str, float]) -> float:
        return sum(w * centroid.get(t, 0.0) for t, w in self.terms)


def _reversed(article_id: str) -> tuple[int, ...]:
    """Sorts ids in reverse, so ``max`` prefers the smallest on ties."""
    return tuple(-ord(c) for c in article_id)


@dataclass(slots=True)
class ArticleState:  # slots: the index holds one per article of the window
    article_id: str
    story_id: str
    time: datetime
    content_hash: str
    minhash: bytes


class _Centroids:
    """The stories' centroids as rows of two matrices (term ids, weights), to score many candidates at once:
    row ``slot`` holds that story's centroid, padded with term id 0, which no term has. Term ids are counted by
    the centroids holding them and recycled when none does, so the vocabulary is that of the stories held."""

    def __init__(self) -> None:
        self._ids: dict[str, int] = {}
        self._terms: list[str | None] = [None]  # id -> term; None: free (or the padding id 0)
        self._free: list[int] = []
        self._refs = np.zeros(1, np.int64)  # id -> how many centroids hold the term
        self._scratch = np.zeros(1)  # id -> the scored article's weight; zero between calls
        self._rows = np.zeros((0, CENTROID_TERMS), np.int32)
        self._weights = np.zeros((0, CENTROID_TERMS))
        self._norms = np.ones(0)  # a centroid's L2 norm, 1.0 for an empty one

    def set(self, slot: int, centroid: dict[str, float], norm: float) -> None:
        known = self._ids.get
        ids = np.array([known(term) or self._id(term) for term in centroid], np.int32)
        self._refs[ids] += 1  # a centroid's terms are distinct
        self.drop(slot)
        if slot >= len(self._rows):
            grow = max(64, slot + 1 - len(self._rows), len(self._rows))
            self._rows = np.concatenate([self._rows, np.zeros((grow, CENTROID_TERMS), np.int32)])
            self._weights = np.concatenate([self._weights, np.zeros((grow, CENTROID_TERMS))])
            self._norms = np.concatenate([self._norms, np.ones(grow)])
        self._norms[slot] = norm or 1.0
        self._rows[slot, :len(ids)] = ids
        self._weights[slot, :len(ids)] = np.fromiter(centroid.values(), np.float64, len(ids))

    def drop(self, slot: int) -> None:
        if slot >= len(self._rows):
            return
        ids = self._rows[slot]
        ids = ids[ids != 0]
        self._rows[slot], self._weights[slot] = 0, 0.0
        self._refs[ids] -= 1
        for unused in ids[self._refs[ids] == 0].tolist():
            del self._ids[self._terms[unused]]
            self._terms[unused] = None
            self._free.append(unused)

    def dots(self, slots: np.ndarray, terms: Iterable[tuple[str, float]]) -> np.ndarray:
        """Each slot's centroid dotted with the sparse vector ``terms``, divided by the centroid's norm."""
        ids, weights = [], []
        for term, weight in terms:
            i = self._ids.get(term)
            if i is not None:
                ids.append(i)
                weights.append(weight)
        self._scratch[ids] = weights
        dots = (self._scratch[self._rows[slots]] * self._weights[slots]).sum(axis=1)
        self._scratch[ids] = 0.0
        return dots / self._norms[slots]

    def _id(self, term: str) -> int:
        i = self._ids.get(term)
        if i is None:
            if self._free:
                i = self._free.pop()
                self._terms[i] = term
            else:
                i = len(self._terms)
                self._terms.append(term)
                if i == len(self._refs):
                    self._refs = np.concatenate([self._refs, np.zeros(i, np.int64)])
                    self._scratch = np.concatenate([self._scratch, np.zeros(i)])
            self._ids[term] = i
        return i


class _Bands:
    """The LSH band index: band key -> the ids of the articles whose signatures have it. Most keys belong to
    one article, held as its id alone (a set for each would cost some 200 bytes a band, 21 bands an article)."""

    def __init__(self) -> None:
        self._held: dict[bytes, str | set[str]] = {}

    def add(self, article: ArticleState) -> None:
        held, article_id = self._held, article.article_id
        for key in _band_keys(article.minhash):
            ids = held.get(key)
            if ids is None:
                held[key] = article_id
            elif isinstance(ids, str):
                if ids != article_id:
                    held[key] = {ids, article_id}
            else:
                ids.add(article_id)

    def remove(self, article: ArticleState) -> None:
        held, article_id = self._held, article.article_id
        for key in _band_keys(article.minhash):
            ids = held.get(key)
            if ids == article_id:
                del held[key]
            elif isinstance(ids, set):
                ids.discard(article_id)
                if len(ids) == 1:
                    held[key] = ids.pop()

    def sharing(self, minhash: bytes) -> set[str]:
        """The ids of the articles sharing at least one band with ``minhash``."""
        found: set[str] = set()
        for key in _band_keys(minhash):
            ids = self._held.get(key)
            if isinstance(ids, str):
                found.add(ids)
            elif ids:
                found |= ids
        return found


@dataclass
class StoryIndex:
    stories: dict[str, StoryState] = field(default_factory=dict)
    articles: dict[str, ArticleState] = field(default_factory=dict)
    saved_by: str | None = None  # the run whose snapshot this is (see pipelines.stories.recover)
    # Each story held has a slot, a small int: postings hold slots, and ``_spans[slot]`` is the story's dated
    # span in microseconds, so candidates are voted and filtered by time in numpy, not story by story.
    _postings: dict[str, set[int]] = field(default_factory=lambda: defaultdict(set), repr=False)
    _posting_arrays: dict[str, np.ndarray] = field(default_factory=dict, repr=False)  # built when voted, until changed
    _slots: dict[str, int] = field(default_factory=dict, repr=False)
    _slot_ids: list[str] = field(default_factory=list, repr=False)  # slot -> story_id; "" when free
    _free: list[int] = field(default_factory=list, repr=False)
    _spans: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.int64), repr=False)
    _centroids: _Centroids = field(default_factory=_Centroids, repr=False)
    _by_hash: dict[str, str] = field(default_factory=dict, repr=False)
    _members: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list), repr=False)
    _bands: _Bands = field(default_factory=_Bands, repr=False)

    # -- lookups --------------------------------------------------------------------------------
    def candidate_slots(self, terms: list[tuple[str, float]], time: datetime, window: timedelta,
                        dated: bool = True) -> np.ndarray:
        """The stories sharing the article's terms and near it in time (when it is ``dated``): the slots of the
        best-voted MAX_CANDIDATES (ties by story id), in no order (assignment scores them all).

        A story's vote is the sum of the weights of the terms it posts, added in the order of ``terms``
        (``np.bincount`` adds its weights in input order), so the same float as adding them one by one."""
        postings, weights = [], []
        for term, weight in terms:
            posting = self._postings.get(term)
            if posting and len(posting) <= MAX_POSTING:
                array = self._posting_arrays.get(term)
                if array is None:
                    array = self._posting_arrays[term] = np.fromiter(posting, np.intp, len(posting))
                postings.append(array)
                weights.append(weight)
        if not postings:
            return np.zeros(0, np.intp)
        slots = np.concatenate(postings)
        size = len(self._slot_ids)
        votes = np.bincount(slots, np.repeat(weights, [len(p) for p in postings]), size)
        # voted for: posting a term; with weights above 0 (an article's always are), having a vote above 0
        voted = np.flatnonzero(votes if min(weights) > 0 else np.bincount(slots, minlength=size))
        if dated:
            at, reach = _micros(time), window // _MICROSECOND
            spans = self._spans[voted]
            voted = voted[(spans[:, 0] - reach <= at) & (at <= spans[:, 1] + reach)]
        if len(voted) > MAX_CANDIDATES:  # the best votes: those above the last one taken, then its ties by id
            held = votes[voted]
            cut = np.partition(held, len(held) - MAX_CANDIDATES)[len(held) - MAX_CANDIDATES]
            above, tied = voted[held > cut], voted[held == cut]
            if len(above) + len(tied) > MAX_CANDIDATES:
                by_id = sorted(tied.tolist(), key=self._slot_ids.__getitem__)
                tied = np.array(by_id[:MAX_CANDIDATES - len(above)], np.intp)
            voted = np.concatenate([above, tied])
        return voted

    def story_at(self, slot: int) -> StoryState:
        return self.stories[self._slot_ids[slot]]

    def similarities(self, slots: np.ndarray, terms: Iterable[tuple[str, float]]) -> np.ndarray:
        """The cosine of an article's L2-normalised ``terms`` with the centroid of the story at each slot,
        computed for all at once: equal to ``cosine(dict(terms), story.centroid) / story.norm`` up to float
        rounding (numpy adds the products in another order)."""
        return self._centroids.dots(slots, terms)

    def near_copy_candidates(self, minhash: bytes) -> list[ArticleState]:
        """Articles sharing at least one LSH band with the signature, in id order."""
        return [self.articles[i] for i in sorted(self._bands.sharing(minhash))]

    def exact_copy_of(self, content_hash: str) -> ArticleState | None:
        article_id = self._by_hash.get(content_hash)
        return self.articles.get(article_id) if article_id else None

    # -- updates --------------------------------------------------------------------------------
    def add_story(self, story: StoryState) -> None:
        self.stories[story.story_id] = story
        if self._free:
            slot = self._free.pop()
            self._slot_ids[slot] = story.story_id
        else:
            slot = len(self._slot_ids)
            self._slot_ids.append(story.story_id)
            if slot == len(self._spans):
                self._spans = np.concatenate([self._spans, np.zeros((max(64, slot), 2), np.int64)])
        self._slots[story.story_id] = slot
        self._set_span(story)
        self._post(story)

    def add_article(self, article: ArticleState, source: str, time: datetime, dated: bool,
                    run_time: datetime, copy: bool = False, title: str | None = None,
                    terms: Iterable[tuple[str, float]] = (), figures: Iterable[Figure] = ()) -> StoryState:
        """Add an article at ``time`` (its publication date if ``dated``, else when it was fetched) to its
        story, by a run that started at ``run_time``: a ``copy`` of another counts among its articles only; an
        original is a representative candidate (with its ``title`` and ``terms``), and its figures are the
        story's. Then the story's representative is chosen again."""
        story = self.stories[article.story_id]
        story.touched = max(story.touched or run_time, run_time)
        story.article_count += 1
        story.sources.add(source)
        key = (not dated, time)
        if story.first_article_key is None or (key, article.article_id) < (story.first_article_key,
                                                                           story.first_article_id or ""):
            story.first_article_id, story.first_article_key = article.article_id, key
        if not copy:
            story.original_count += 1
            if len(story.members) < MAX_MEMBERS:
                story.members.append(Member(article.article_id, title, time, tuple(islice(terms, MEMBER_TERMS))))
            room = MAX_STORY_FIGURES - len(story.figures)
            story.figures.extend((source, f) for f in islice(figures, max(0, room)))
            story.choose_representative()
        story.first_seen = min(story.first_seen, time)
        story.last_seen = max(story.last_seen, time)
        if dated:
            story.dated_first = min(story.dated_first or time, time)
            story.dated_last = max(story.dated_last or time, time)
            self._set_span(story)
        self._index_article(article)
        return story

    def merge_into_centroid(self, story: StoryState, terms: dict[str, float]) -> None:
        posted = story.top_terms(POSTING_TERMS)
        centroid = dict(story.centroid)
        for term, weight in terms.items():
            centroid[term] = centroid.get(term, 0.0) + weight
        story.set_centroid(centroid)
        self._post(story, posted)

    def prune(self, horizon: datetime) -> int:
        """Drop the stories (and their articles) no run has touched since ``horizon``; returns how many."""
        old = [s for s in self.stories.values() if (s.touched or s.last_seen) < horizon]
        for story in old:
            self._unpost(story, story.top_terms(POSTING_TERMS))
            del self.stories[story.story_id]
            slot = self._slots.pop(story.story_id)
            self._slot_ids[slot] = ""
            self._centroids.drop(slot)
            self._free.append(slot)
            for article_id in self._members.pop(story.story_id, []):
                article = self.articles.pop(article_id, None)
                if article is None:
                    continue
                if self._by_hash.get(article.content_hash) == article_id:
                    del self._by_hash[article.content_hash]
                self._bands.remove(article)
        return len(old)

    def _index_article(self, article: ArticleState) -> None:
        self.articles[article.article_id] = article
        self._by_hash.setdefault(article.content_hash, article.article_id)
        self._members[article.story_id].append(article.article_id)
        self._bands.add(article)

    def _set_span(self, story: StoryState) -> None:
        if story.dated_first is None or story.dated_last is None:
            self._spans[self._slots[story.story_id]] = _UNDATED
        else:
            self._spans[self._slots[story.story_id]] = _micros(story.dated_first), _micros(story.dated_last)

    def _post(self, story: StoryState, posted: Iterable[str] = ()) -> None:
        """Post the story under its top terms, where it was ``posted`` before, and hold its centroid."""
        slot = self._slots[story.story_id]
        top, before = set(story.top_terms(POSTING_TERMS)), set(posted)
        self._unpost(story, before - top)
        for term in top - before:
            self._postings[term].add(slot)
            self._posting_arrays.pop(term, None)
        self._centroids.set(slot, story.centroid, story.norm)

    def _unpost(self, story: StoryState, terms: Iterable[str]) -> None:
        slot = self._slots[story.story_id]
        for term in terms:
            self._posting_arrays.pop(term, None)
            posting = self._postings.get(term)
            if posting is not None:
                posting.discard(slot)
                if not posting:
                    del self._postings[term]

    # -- persistence ----------------------------------------------------------------------------
    def to_json(self) -> dict:
        """The index as one document (what a snapshot's lines hold; older snapshots were this document)."""
        doc: dict = {"format": FORMAT_VERSION, "saved_by": self.saved_by, "stories": [], "articles": []}
        for kind, record in self._records():
            doc[{"story": "stories", "article": "articles"}[kind]].append(record)
        return doc

    def _records(self) -> Iterator[tuple[str, dict]]:
        for s in sorted(self.stories.values(), key=lambda s: s.story_id):
            yield "story", {
                "story_id": s.story_id, "representative_id": s.representative_id, "title": s.title,
                "first_seen": _iso(s.first_seen), "last_seen": _iso(s.last_seen),
                "dated_first": _iso(s.dated_first), "dated_last": _iso(s.dated_last), "touched": _iso(s.touched),
                "article_count": s.article_count, "sources": sorted(s.sources), "centroid": s.centroid,
                "original_count": s.original_count, "first_article_id": s.first_article_id,
                "first_article_time": _iso(s.first_article_key[1]) if s.first_article_key else None,
                "first_article_dated": not s.first_article_key[0] if s.first_article_key else None,
                "members": [[m.article_id, m.title, _iso(m.time), [list(p) for p in m.terms]] for m in s.members],
                "figures": [[outlet, _figure_json(f)] for outlet, f in s.figures], "born": s.born}
        for a in sorted(self.articles.values(), key=lambda a: (a.time, a.article_id)):
            yield "article", {"article_id": a.article_id, "story_id": a.story_id, "time": _iso(a.time),
                              "content_hash": a.content_hash, "minhash": signature_values(a.minhash)}

    @classmethod
    def from_json(cls, doc: dict) -> StoryIndex:
        _check_format(doc)
        index = cls(saved_by=doc.get("saved_by"))
        for s in doc["stories"]:
            index._add_record("story", s)
        for a in doc["articles"]:
            index._add_record("article", a)
        return index

    @classmethod
    def from_lines(cls, lines: Iterator[dict]) -> StoryIndex:
        """The index from a snapshot's lines (``state.load``): a head, then ``{kind: record}`` per line,
        or, from formats before 4, the whole document on one line."""
        head = next(lines)
        if "stories" in head:
            return cls.from_json(head)
        _check_format(head)
        index = cls(saved_by=head.get("saved_by"))
        for line in lines:
            ((kind, record),) = line.items()
            index._add_record(kind, record)
        return index

    def _add_record(self, kind: str, record: dict) -> None:
        if kind == "story":
            story = StoryState(
                story_id=record["story_id"], representative_id=record["representative_id"], title=record["title"],
                first_seen=_parse(record["first_seen"]), last_seen=_parse(record["last_seen"]),
                article_count=record["article_count"], sources=set(record["sources"]), centroid={},
                # format 1 had no dated span: every member counted as dated
                dated_first=_maybe(record.get("dated_first", record["first_seen"])),
                dated_last=_maybe(record.get("dated_last", record["last_seen"])), touched=_maybe(record.get("touched")))
            # format < 5: every member counted as an original; no first article, candidates or figures
            story.original_count = record.get("original_count", record["article_count"])
            if record.get("first_article_id"):
                story.first_article_id = record["first_article_id"]
                story.first_article_key = (not record["first_article_dated"], _parse(record["first_article_time"]))
            story.members = [Member(i, t, _parse(at), tuple((sys.intern(a), b) for a, b in terms))
                             for i, t, at, terms in record.get("members", ())]
            story.figures = [(outlet, _figure(f)) for outlet, f in record.get("figures", ())]
            story.born = record.get("born") or story.first_seen.date().isoformat()
            # terms recur across stories: one string each (one JSON document shared them; lines do not)
            story.set_centroid({sys.intern(term): weight for term, weight in record["centroid"].items()})
            self.add_story(story)
        elif kind == "article":
            self._index_article(ArticleState(record["article_id"], record["story_id"], _parse(record["time"]),
                                             record["content_hash"], signature(record["minhash"])))
        else:
            raise ValueError(f"unknown story index record {kind!r}")


def _check_format(head: dict) -> None:
    if head.get("format") not in (1, 2, 3, 4, FORMAT_VERSION):
        raise state.UnsupportedFormat(f"unsupported story index format {head.get('format')!r}")


_BAND_KEYS = [(bytes((b,)), b * ROWS * SIGNATURE_DTYPE.itemsize, (b + 1) * ROWS * SIGNATURE_DTYPE.itemsize)
              for b in range(BANDS)]


def _band_keys(minhash: bytes) -> list[bytes]:
    """Band b's key: b, then the band's ROWS values (their bytes)."""
    return [prefix + minhash[start:end] for prefix, start, end in _BAND_KEYS]


def load_index(state_dir: str) -> tuple[StoryIndex, list[str]]:
    """The snapshot in force under ``state_dir``, read a line at a time (an empty index on the first run),
    and the snapshots passed over because they could not be read (see ``pipelines.state.load``)."""
    index, unreadable = state.load(state_dir, StoryIndex.from_lines)
    return index or StoryIndex(), unreadable


def read_index(state_dir: str, name: str) -> StoryIndex:
    """The snapshot ``name`` under ``state_dir``, committed or not."""
    return state.load_named(state_dir, name, StoryIndex.from_lines)


def write_index(state_dir: str, index: StoryIndex) -> str:
    """Writes the index's snapshot under the name of the run that saved it (``saved_by``), a story or article
    per line, encoded as they come: as one document it would cost some 6 KB an article for a moment, when
    written and when read. It takes effect once committed (``pipelines.state``); returns its file name."""
    assert index.saved_by, "an index is written by a run"
    return state.write_lines(state_dir, index.saved_by, {"format": FORMAT_VERSION, "saved_by": index.saved_by},
                             index._records())


def _figure_json(figure: Figure) -> dict:
    row = to_row(figure)
    row["day"] = row["day"].isoformat() if row["day"] else None
    return {k: v for k, v in row.items() if v is not None}


def _figure(doc: dict) -> Figure:
    day = doc.get("day")
    return from_row({**doc, "day": date.fromisoformat(day) if day else None})


def _micros(time: datetime) -> int:
    """Microseconds since the epoch: exact, so comparisons agree with the datetimes'."""
    return (time - _EPOCH) // _MICROSECOND


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _parse(value: str) -> datetime:
    return datetime.fromisoformat(value)


def _maybe(value: str | None) -> datetime | None:
    return _parse(value) if value else None
