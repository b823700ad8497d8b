"""The SkipKnown stage: drop what earlier runs stored, and keep one of each within-run duplicate.

Keys: before fetching, an entry's canonical link; after extraction, the article id (from the page's
canonical URL) of the article's ref (``pipelines.staging``). An element is already stored when one of its
lookup strings equals a value in the stored ``articles/`` dataset: an entry's link as given or in canonical
form against the stored ``url``, ``final_url`` and ``canonical_url``; an article's id against
``article_id``. Such elements are counted as ``entries_already_stored`` and dropped; several elements of
this run with one key keep the first in a deterministic order and turn the rest into ``duplicate_url``
rejects (stage ``dedup``).

An entry an earlier run rejected for good is settled too: its link in the ``url`` of an entry-level row of
``rejects/`` whose reason would recur (a 404, a page with no text, a refused address; not a timeout, a
connection error, a 5xx, a 429 or an internal error, which later runs retry) counts as already stored, so
a feed polled every few minutes does not refetch, and reject again, the same dead link each time. Retries
are bounded: a link with ``ATTEMPTS`` entry-level rows of reasons that may pass is settled as well.

A stream (``pipelines.streaming``) checks with ``SkipSeen`` instead: what was stored or settled before the
stream started is read once (``stored_values``), so a poll reads no stored file; the keys its polls pass on
join those values in the worker's memory at once, as a stream started later would read them, and are keyed
state until ``window_days`` after the last poll that saw them (for a worker that takes the key over).

The lookup goes the cheap way round: this run's lookup strings (a few thousand at most) are a side input,
and each batch of stored rows is tested against them with one vectorised ``is_in`` per column, so only
matches become Beam elements. The stored columns are still read once per run, but at columnar speed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import suppress
from datetime import UTC, datetime
from typing import Any

import apache_beam as beam
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from apache_beam import coders
from apache_beam.io.filesystems import FileSystems
from apache_beam.transforms import userstate, window
from apache_beam.utils import shared
from apache_beam.utils.timestamp import Duration

from pipelines import metrics
from pipelines.failures import Guarded, describe, rejects_for
from pipelines.records import RETRYABLE, ArticleRef, FeedEntry, Reject
from pipelines.sinks import dataset_files, has_files
from pipelines.urls import canonicalize

REJECTS = "rejects"
PROBES = "probes"
ENTRY_COLUMNS = ("url", "final_url", "canonical_url")
ARTICLE_COLUMNS = ("article_id",)
REJECT_COLUMNS = ("url", "feed_url", "reason", "detail")
ATTEMPTS = 4  # an entry failing for reasons that may pass is tried by this many runs, then settled


def entry_key(entry: FeedEntry) -> str:
    return canonicalize(entry.link)


def entry_lookups(entry: FeedEntry) -> list[str]:
    """The entry's link as the feed gave it and in canonical form."""
    return sorted({entry.link.strip(), entry_key(entry)})


def article_key(article: ArticleRef) -> str:
    return article.article_id


def article_lookups(article: ArticleRef) -> list[str]:
    return [article.article_id]


def stored_matches(table: pa.Table, columns: Iterable[str], lookup: dict[str, list[str]]) -> list[str]:
    """The keys whose lookup strings occur in ``columns`` of a batch of stored rows, sorted."""
    if not lookup or table.num_rows == 0:
        return []
    wanted = pa.array(sorted(lookup), pa.string())
    found: set[str] = set()
    for name in columns:
        column = table.column(name)
        found.update(v for v in pc.filter(column, pc.is_in(column, value_set=wanted)).unique().to_pylist()
                     if v is not None)
    return sorted({key for value in found for key in lookup[value]})


def _retryable(rejects: pa.Table) -> pa.Array:
    found = pc.or_(pc.is_in(rejects.column("reason"), value_set=pa.array(RETRYABLE, pa.string())),
                   pc.starts_with(rejects.column("detail"), "HTTP 429"))
    return pc.fill_null(found, False)


def settled(rejects: pa.Table) -> pa.Table:
    """The entry-level reject rows whose reason would recur if the entry were tried again."""
    return rejects.filter(pc.and_(pc.is_valid(rejects.column("feed_url")), pc.invert(_retryable(rejects))))


def retried(rejects: pa.Table) -> pa.Table:
    """The entry-level reject rows whose reason may pass on another try."""
    return rejects.filter(pc.and_(pc.is_valid(rejects.column("feed_url")), _retryable(rejects)))


def counted_matches(table: pa.Table, column: str, lookup: dict[str, list[str]]) -> list[tuple[str, int]]:
    """(key, rows) for the keys whose lookup strings occur in ``column`` of a batch of stored rows."""
    if not lookup or table.num_rows == 0:
        return []
    values = pc.filter(table.column(column), pc.is_in(table.column(column),
                                                      value_set=pa.array(sorted(lookup), pa.string())))
    counts: dict[str, int] = {}
    for item in pc.value_counts(values).to_pylist():
        for key in lookup.get(item["values"], ()):
            counts[key] = counts.get(key, 0) + item["counts"]
    return sorted(counts.items())


def _lookup_table(pairs: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    table: dict[str, set[str]] = {}
    for value, key in pairs:
        table.setdefault(value, set()).add(key)
    return {value: sorted(keys) for value, keys in table.items()}


class StoredKeys(beam.PTransform):
    """(lookup string, key) pairs -> the keys found in the given columns of the stored articles, and with
    ``settled``, in the ``url`` of settled rejects (see the module's doc); a key found twice comes twice."""

    def __init__(self, output: str, columns: tuple[str, ...], settled: bool = False):
        super().__init__()
        self._output, self._columns, self._settled = output, columns, settled

    def expand(self, probes):
        articles = bool(self._columns) and has_files(self._output, "articles")
        rejects = self._settled and has_files(self._output, "rejects")
        if not (articles or rejects):
            return probes.pipeline | "NothingStored" >> beam.Create([])
        lookup = probes | "Lookup" >> beam.combiners.ToList() | "AsTable" >> beam.Map(_lookup_table)
        found = []
        if articles:
            found.append(
                probes.pipeline
                | "ReadArticles" >> beam.io.ReadFromParquetBatched(dataset_files(self._output, "articles"),
                                                                   columns=list(self._columns))
                | "MatchArticles" >> beam.FlatMap(stored_matches, self._columns,
                                                  lookup=beam.pvalue.AsSingleton(lookup)))
        if rejects:
            batches = probes.pipeline | "ReadRejects" >> beam.io.ReadFromParquetBatched(
                dataset_files(self._output, "rejects"), columns=list(REJECT_COLUMNS))
            found.append(
                batches
                | "Settled" >> beam.Map(settled)
                | "MatchSettled" >> beam.FlatMap(stored_matches, ("url",), lookup=beam.pvalue.AsSingleton(lookup)))
            found.append(
                batches
                | "Retried" >> beam.Map(retried)
                | "CountRetried" >> beam.FlatMap(counted_matches, "url", lookup=beam.pvalue.AsSingleton(lookup))
                | "Attempts" >> beam.CombinePerKey(sum)
                | "GivenUp" >> beam.Filter(lambda kv: kv[1] >= ATTEMPTS)
                | "GivenUpKeys" >> beam.Keys())
        return found | "AllFound" >> beam.Flatten()


def _key(item, key: Callable, lookups: Callable) -> Iterator:
    """(key, item), and a (lookup string, key) probe per lookup string on the ``probes`` output."""
    k = key(item)
    probes = [(value, k) for value in lookups(item)]
    yield k, item
    for probe in probes:
        yield beam.pvalue.TaggedOutput(PROBES, probe)


def _select(grouped: tuple[str, dict[str, list]], order: Callable, link: Callable) -> Iterator:
    _, groups = grouped
    items = groups["item"]
    if not items:
        return
    if groups["stored"]:
        metrics.inc("entries_already_stored", len(items))
        return
    first, *rest = sorted(items, key=order)
    now = datetime.now(UTC)
    duplicates = [Reject(link(item), item.feed_url, "dedup", "duplicate_url", f"same article as {link(first)}", now)
                  for item in rest]
    yield first
    for reject in duplicates:
        yield beam.pvalue.TaggedOutput(REJECTS, reject)


class SkipKnown(beam.PTransform):
    """Elements -> ``new`` (one per key, not stored before) and ``rejects`` (within-run duplicates, failures).

    ``key`` names an element; ``lookups`` gives the strings to look for in the ``columns`` of the
    articles stored under ``output``.
    """

    def __init__(self, output: str, columns: tuple[str, ...], key: Callable, lookups: Callable, order: Callable,
                 link: Callable, settled: bool = False):
        super().__init__()
        self._output, self._columns, self._settled = output, columns, settled
        self._key, self._lookups, self._order, self._link = key, lookups, order, link

    def expand(self, items):
        keyed = items | "KeyItems" >> Guarded(beam.FlatMap(_key, self._key, self._lookups), "dedup", PROBES)
        stored = (
            keyed[PROBES]
            | "FindStored" >> StoredKeys(self._output, self._columns, self._settled)
            | "AsKeyed" >> beam.Map(lambda k: (k, True))
        )
        selected = (
            {"item": keyed["main"], "stored": stored}
            | "Join" >> beam.CoGroupByKey()
            | "Select" >> Guarded(beam.FlatMap(_select, self._order, self._link), "dedup", REJECTS, main="new")
        )
        rejects = (keyed[REJECTS], selected[REJECTS]) | "AllRejects" >> beam.Flatten()
        return {"new": selected["new"], REJECTS: rejects}


def article_order(article: ArticleRef) -> tuple:
    return (article.published_at is None, article.published_at or datetime.min.replace(tzinfo=UTC),
            article.url, article.feed_url)


def entry_order(entry: FeedEntry) -> tuple:
    return entry.sort_key()


def _unsettled(grouped: tuple[str, dict[str, list]]) -> Iterator[Reject]:
    _, groups = grouped
    if groups["stored"]:
        metrics.inc("entries_already_stored", len(groups["reject"]))
        return
    yield from groups["reject"]


class SkipSettled(beam.PTransform):
    """Rejects -> the rejects to write. An entry-level reject of an entry an earlier run settled (a feed entry
    with no usable link, rejected again each time its feed is read anew) counts as already stored instead
    of being written again; feed-level rejects pass."""

    def __init__(self, output: str):
        super().__init__()
        self._output = output

    def expand(self, rejects):
        feed_level, entry_level = rejects | "ByLevel" >> beam.Partition(lambda r, _: int(r.feed_url is not None), 2)
        keyed = entry_level | "KeyRejects" >> beam.WithKeys(lambda r: r.url)
        settled_ = (
            keyed
            | "Probes" >> beam.Map(lambda kv: (kv[0], kv[0]))
            | "FindSettled" >> StoredKeys(self._output, (), settled=True)
            | "AsKeyed" >> beam.Map(lambda k: (k, True))
        )
        fresh = {"reject": keyed, "stored": settled_} | "Join" >> beam.CoGroupByKey() | "Unsettled" >> beam.FlatMap(
            _unsettled)
        return (feed_level, fresh) | "AllRejects" >> beam.Flatten()


def stored_values(output: str, columns: tuple[str, ...], settled_: bool = False) -> frozenset[str]:
    """Every value of ``columns`` of the stored articles; with ``settled_``, also the links of entries settled
    by a reject or given up after ``ATTEMPTS`` (see the module's doc). A stream reads them once, at its start.
    A file gone between listing and reading (a compaction beside the stream) means reading them again."""
    for _ in range(2):
        with suppress(FileNotFoundError):
            return _stored_values(output, columns, settled_)
    return _stored_values(output, columns, settled_)


def _stored_values(output: str, columns: tuple[str, ...], settled_: bool) -> frozenset[str]:
    values: set[str] = set()
    tries: dict[str, int] = {}
    for name, wanted in (("articles", columns), ("rejects", REJECT_COLUMNS if settled_ else ())):
        if not wanted or not has_files(output, name):
            continue
        for meta in FileSystems.match([dataset_files(output, name)])[0].metadata_list:
            with FileSystems.open(meta.path, compression_type="uncompressed") as f:
                table = pq.read_table(f, columns=list(wanted))
            if name == "articles":
                values.update(v for c in wanted for v in table.column(c).to_pylist() if v is not None)
                continue
            values.update(v for v in settled(table).column("url").to_pylist() if v is not None)
            for item in pc.value_counts(retried(table).column("url")).to_pylist():
                if item["values"] is not None:
                    tries[item["values"]] = tries.get(item["values"], 0) + item["counts"]
    return frozenset(values | {url for url, n in tries.items() if n >= ATTEMPTS})


class _Values(set):
    """A set of strings that ``apache_beam.utils.shared`` can hold (it keeps weak references), with the lock
    that makes a key's check and its marking one step for every thread of the process."""

    def __init__(self, values: Iterable[str]):
        super().__init__(values)
        self.lock = threading.Lock()


class _SeenFn(beam.DoFn):
    """A stream's already-stored check, keyed: a key is stored when a poll of this stream passed it on (keyed
    state: the lookup strings of what it passed on, kept until ``keep`` after the poll that last saw the key)
    or when one of its lookup strings is among the values stored before (``stored_values``, read once per
    worker process). What a poll passes on joins those values at once, and what another worker passed on
    joins them when its state expires here, as a worker started later would read them from the datasets:
    Beam state stays bounded by the window, a link listed again after a longer absence is still known, and
    the check holds even where a runner runs one key in two bundles at once (Prism was seen to)."""

    SEEN = userstate.ReadModifyWriteStateSpec("seen", coders.IterableCoder(coders.StrUtf8Coder()))
    EXPIRY = userstate.TimerSpec("expiry", userstate.TimeDomain.WATERMARK)

    def __init__(self, output: str, columns: tuple[str, ...], settled_: bool, lookups: Callable, order: Callable,
                 link: Callable, keep: Duration):
        self._output, self._columns, self._settled = output, columns, settled_
        self._lookups, self._order, self._link, self._keep = lookups, order, link, keep
        self._shared = shared.Shared()  # one set per process for this step, whichever instance runs a key
        self._stored: _Values | None = None

    def _stored_before(self) -> _Values:
        if self._stored is None:
            self._stored = self._shared.acquire(
                lambda: _Values(stored_values(self._output, self._columns, self._settled)))
        return self._stored

    def process(self, grouped: tuple[str, Iterable], timestamp=beam.DoFn.TimestampParam,
                seen=beam.DoFn.StateParam(SEEN), expiry=beam.DoFn.TimerParam(EXPIRY)) -> Iterator:
        key, items = grouped[0], list(grouped[1])
        try:
            before = self._stored_before()
            with before.lock:
                known = seen.read()
                values = sorted({v for item in items for v in self._lookups(item)} | set(known or ()))
                stored = known is not None or any(v in before for v in values)
                outputs = [] if stored else list(_select((key, {"item": items, "stored": []}), self._order,
                                                         self._link))
                before.update(values)
        except OSError:  # the stored datasets cannot be read: the stream fails, as a run does
            raise
        except Exception as e:  # the mechanism itself: the key's items are rejects, nothing is marked seen
            for item in items:
                yield from (beam.pvalue.TaggedOutput(REJECTS, r) for r in rejects_for(item, "dedup", describe(e)))
            return
        seen.write(values)
        expiry.set(timestamp + self._keep)
        if stored:
            yield metrics.counted("entries_already_stored", len(items))
        yield from outputs

    @userstate.on_timer(EXPIRY)
    def expire(self, seen=beam.DoFn.StateParam(SEEN)) -> None:
        before = self._stored_before()
        with before.lock:
            before.update(seen.read() or ())
        seen.clear()


class SkipSeen(beam.PTransform):
    """A stream's SkipKnown, with the same outputs and a ``counts`` output: elements (each timestamped with
    the poll that read it) -> ``new`` (one per key per poll, stored by no earlier poll or run) and
    ``rejects``. Within a poll, several elements with one key keep the first in ``order`` (the rest are
    ``duplicate_url`` rejects), as in a batch run; a key passed on by one poll is already stored for every
    later poll: in the worker's memory, and in keyed state until ``keep_days`` after the last poll that saw
    it."""

    def __init__(self, output: str, columns: tuple[str, ...], key: Callable, lookups: Callable, order: Callable,
                 link: Callable, keep_days: float, settled: bool = False):
        super().__init__()
        self._output, self._columns, self._settled = output, columns, settled
        self._key, self._lookups, self._order, self._link = key, lookups, order, link
        self._keep = Duration(seconds=int(keep_days * 86400))

    def expand(self, items):
        keyed = (items | "ByPoll" >> beam.WindowInto(window.FixedWindows(1))
                 | "KeyItems" >> Guarded(beam.Map(lambda item, key: (key(item), item), self._key), "dedup"))
        seen = (
            keyed["main"]
            | "StrKeys" >> beam.Map(lambda kv: kv).with_output_types(tuple[str, Any])  # for the state's key coder
            | "ByKey" >> beam.GroupByKey()
            | "AcrossPolls" >> beam.WindowInto(window.GlobalWindows())
            | "Seen" >> beam.ParDo(_SeenFn(self._output, self._columns, self._settled, self._lookups, self._order,
                                           self._link, self._keep))
            .with_outputs(REJECTS, metrics.COUNTS, main="new")
        )
        back = {tag: seen[tag] | f"{tag.title()}ByPoll" >> beam.WindowInto(window.FixedWindows(1))
                for tag in ("new", REJECTS, metrics.COUNTS)}  # each output in its poll's window again
        back[REJECTS] = (keyed[REJECTS], back[REJECTS]) | "AllRejects" >> beam.Flatten()
        return back
