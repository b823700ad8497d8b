"""The one metrics namespace. Counter names are fixed; the run summary is built from them.

Counters: feeds_polled, feeds_unchanged, feeds_failing, feeds_rejected, feeds_bozo, entries_seen,
entries_already_stored, pages_fetched, articles_extracted, articles_written, duplicates_exact, duplicates_near,
stories_new, stories_continued, articles_restored_to_index, state_snapshots_unreadable, rejects_written,
rejected_<reason>.
"""

from __future__ import annotations

from apache_beam.metrics import Metrics
from apache_beam.pvalue import TaggedOutput

NAMESPACE = "newsbeam"


def inc(name: str, n: int = 1) -> None:
    Metrics.counter(NAMESPACE, name).inc(n)


COUNTS = "counts"  # a stream's steps also emit their counts as data, (name, n), for the summary of each poll


def counted(name: str, n: int = 1, counter: bool = True) -> TaggedOutput:
    """``n`` under ``name`` as an element of the ``counts`` output, counted by the counter of that name too
    unless ``counter`` is false (the step counted it already)."""
    if counter:
        inc(name, n)
    return TaggedOutput(COUNTS, (name, n))
