"""The one metrics namespace. Counter names are fixed; the run summary is built from them.

Counters: feeds_polled, feeds_unchanged, feeds_failing, feeds_rejected, feeds_bozo, entries_seen,
entries_already_stored, pages_fetched, articles_extracted, articles_written, duplicates_exact, duplicates_near,
stories_new, stories_continued, articles_restored_to_index, state_snapshots_unreadable, rejects_written,
rejected_<reason>.
"""

from __future__ import annotations

from apache_beam.metrics import Metrics

NAMESPACE = "newsbeam"


def inc(name: str, n: int = 1) -> None:
    Metrics.counter(NAMESPACE, name).inc(n)
