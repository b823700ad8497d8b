"""Streaming mode: poll the feeds every ``[stream] poll_interval`` seconds until told to stop.

On a runner that streams (Prism, Flink, Dataflow) the stream is one unbounded pipeline
(``pipelines.streaming``), and this module follows it (``follow``): it prints a line for each poll as the
poll's commit leaves its summary, keeps the stream's summary under ``_runs/`` up to date, and stops the
pipeline when asked: no further poll starts, and once every poll started is committed the job is cancelled
(a second request cancels it at once). The stream holds the output's lock from start to end.

Where the runner cannot stream (the in-process runner), the stream is a loop of bounded runs (``run_stream``):
each poll is one run of the batch pipeline (``pipelines.pipeline``) over the state the previous poll or
batch run left beside the dataset: the feed validators (conditional GET), the story index and the stored
and settled entries. So a poll fetches only entries no earlier poll or run stored or settled, continues
their stories with the same ``story_id``s, and commits its articles, stories and rejects before the next
poll starts, as files named like any run's. Polls start on a fixed schedule (start + k * interval); a poll
that overruns the interval is followed at once by the next, without making up the ticks it missed. A stop
request (SIGTERM or SIGINT, see the CLI) ends the stream after the poll under way has committed; a second
one aborts that poll, whose uncommitted files the next run removes.

Either way, after the stream ends, batch runs (or another stream) continue from its state.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

from pipelines.records import Run
from pipelines.summary import save_summary

SUMMED = ("feeds", "entries", "articles_written", "duplicates", "stories", "state", "rejects")
NO_POLLS = MappingProxyType({"polls": 0, "last_poll": None, "metrics_available": True, "reconciled": True})


def poll_line(number: int, summary: dict) -> str:
    """One line per poll on stdout: what it read, what became of its entries, its stories."""
    head = f"poll {number} {summary['run_id']} ({summary['seconds']:.1f}s)"
    if not summary["metrics_available"]:
        return f"{head}: counts unavailable, the runner reported no metrics"
    f, e, s = summary["feeds"], summary["entries"], summary["stories"]
    return (f"{head}: feeds {f['polled']} polled ({f['unchanged']} unchanged, {f['failing']} failing); "
            f"entries {e['seen']} seen = {e['articles_written']} stored + {e['rejected']} rejected + "
            f"{e['already_stored']} already stored; stories {s['new']} new, {s['continued']} continued"
            + ("" if summary["reconciled"] else "  ** DOES NOT RECONCILE **"))


def _add(total: Any, part: Any) -> Any:
    if isinstance(part, dict):
        total = dict(total or {})
        for key, value in part.items():
            total[key] = _add(total.get(key), value)
        return total
    return (total or 0) + part


def add_poll(totals: Mapping | None, poll: dict) -> dict:
    """The stream's running totals (``None``: no poll yet) with one more poll's summary added: the stream's
    summary is rewritten after every poll at a cost that does not grow with the polls before it."""
    totals = dict(totals or NO_POLLS)
    totals["polls"] += 1
    totals["last_poll"] = poll["run_id"]
    totals["metrics_available"] = totals["metrics_available"] and poll["metrics_available"]
    if totals["metrics_available"]:
        for key in SUMMED:
            totals[key] = _add(totals.get(key), poll[key])
        totals["reconciled"] = totals["reconciled"] and poll["reconciled"]
    return totals


def stream_summary(stream: Run, totals: Mapping | None, finished_at: datetime, output: str, interval: float,
                   stopped_by: str) -> dict:
    """The whole stream's summary from its running totals (``add_poll``): its polls' counts summed, reconciled
    when every poll's was. Its polls' own summaries are the ``_runs/`` files whose ``stream`` is its id."""
    totals = totals or NO_POLLS
    summary: dict[str, Any] = {
        "run_id": stream.run_id, "kind": "stream", "output": output, "started_at": stream.started_at.isoformat(),
        "finished_at": finished_at.isoformat(), "seconds": round((finished_at - stream.started_at).total_seconds(), 3),
        "poll_interval": interval, "polls": totals["polls"], "last_poll": totals["last_poll"],
        "stopped_by": stopped_by, "metrics_available": totals["metrics_available"],
    }
    if summary["metrics_available"]:
        summary.update({key: totals.get(key) for key in SUMMED})
        summary["reconciled"] = totals["reconciled"]
    else:
        summary["reconciled"] = None
    return summary


def run_stream(stream: Run, output: str, interval: float, poll: Callable[[], dict], stop: threading.Event,
               polls: int | None = None, say: Callable[[str], None] = print,
               clock: Callable[[], float] = time.monotonic) -> dict:
    """Poll until ``polls`` polls are done or ``stop`` is set; returns the stream's summary, also saved under
    ``_runs/`` after every poll (so a stream that is killed still leaves the summary of what it committed).
    ``poll`` runs one poll and returns its run summary."""
    totals: dict | None = None
    next_start = clock()
    while not stop.is_set():
        next_start = max(next_start, clock())
        summary = poll()
        totals = add_poll(totals, summary)
        say(poll_line(totals["polls"], summary))
        finished = polls is not None and totals["polls"] >= polls
        stream_total = stream_summary(stream, totals, datetime.now(UTC), output, interval,
                                      "polls" if finished else "running")
        save_summary(output, stream_total)
        if finished:
            return stream_total
        next_start += interval
        stop.wait(max(0.0, next_start - clock()))
    stream_total = stream_summary(stream, totals, datetime.now(UTC), output, interval, "signal")
    save_summary(output, stream_total)
    return stream_total


def follow(stream: Run, output: str, interval: float, finished: Callable[[float], bool],
           new_polls: Callable[[], list[dict]], stop: threading.Event, drained: Callable[[], bool],
           cancel: Callable[[], None], polls: int | None = None, say: Callable[[str], None] = print) -> dict:
    """Follow an unbounded stream until its pipeline ends (``finished(timeout)``, which waits up to that many
    seconds): each poll's summary (``new_polls``: those committed since the last call, in order) is printed
    as a line and the stream's summary saved. The pipeline is cancelled once ``polls`` polls are committed,
    or once ``stop`` is set and ``drained`` says every poll started is committed."""
    totals: dict | None = None
    cancelled = False
    while True:
        ended = finished(0.5)
        for summary in new_polls():
            totals = add_poll(totals, summary)
            say(poll_line(totals["polls"], summary))
            save_summary(output, stream_summary(stream, totals, datetime.now(UTC), output, interval, "running"))
        if ended:
            break
        if not cancelled and ((polls is not None and (totals or {}).get("polls", 0) >= polls)
                              or (stop.is_set() and drained())):
            cancel()
            cancelled = True
    stream_total = stream_summary(stream, totals, datetime.now(UTC), output, interval,
                                  "signal" if stop.is_set() else "polls")
    save_summary(output, stream_total)
    return stream_total
