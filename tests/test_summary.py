"""The run summary: from Beam metrics, and honest when a runner reports none."""

from datetime import UTC, datetime, timedelta

from pipelines.records import Run
from pipelines.summary import build_summary, counters_of, format_summary

RUN = Run("20250614T000000Z-sum001", datetime(2025, 6, 14, tzinfo=UTC))


class NoMetrics:
    def metrics(self):
        raise NotImplementedError("this runner has no metrics")


def test_a_runner_without_metrics_gets_a_summary_that_says_so():
    counters = counters_of(NoMetrics())
    summary = build_summary(counters, RUN, RUN.started_at + timedelta(seconds=3), "out")
    assert counters is None and summary["metrics_available"] is False and summary["reconciled"] is None
    text = format_summary(summary)
    assert "unavailable" in text and "0 seen" not in text and "reconcile" in text


def test_counts_reconcile_or_say_they_do_not():
    counters = {"entries_seen": 5, "articles_written": 3, "entries_rejected": 1, "entries_already_stored": 1,
                "rejected_http_4xx": 1, "rejects_written": 1}
    good = build_summary(counters, RUN, RUN.started_at, "out")
    assert good["reconciled"] and good["metrics_available"] and "DOES NOT RECONCILE" not in format_summary(good)
    bad = build_summary({**counters, "entries_seen": 6}, RUN, RUN.started_at, "out")
    assert not bad["reconciled"] and "DOES NOT RECONCILE" in format_summary(bad)


def test_damaged_state_passed_over_is_said_only_when_it_happened():
    quiet = build_summary({"entries_seen": 0}, RUN, RUN.started_at, "out")
    assert quiet["state"] == {"snapshots_unreadable": 0} and "state:" not in format_summary(quiet)
    damaged = build_summary({"state_snapshots_unreadable": 2}, RUN, RUN.started_at, "out")
    assert damaged["state"] == {"snapshots_unreadable": 2}
    assert "state:    2 damaged snapshot(s) passed over" in format_summary(damaged)
