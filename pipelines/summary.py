"""The run summary: built from the pipeline's counters, printed and saved beside the data.

Reconciliation: every feed entry ends as an article row, an entry-level reject row, or an entry
recognised as already stored, so ``entries_seen == articles_written + entries_rejected +
entries_already_stored``. Feed-level rejects (a feed that failed as a whole) have no entries.
"""

from __future__ import annotations

import json
from datetime import datetime

from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics.metric import MetricsFilter

from pipelines.metrics import NAMESPACE
from pipelines.records import Run


def counters_of(result) -> dict[str, int] | None:
    """Committed counter values of the newsbeam namespace (attempted where a runner commits none); None when
    the runner reports no metrics at all."""
    try:
        found = result.metrics().query(MetricsFilter().with_namespace(NAMESPACE))["counters"]
    except NotImplementedError:
        return None
    out: dict[str, int] = {}
    for c in found:
        value = c.committed if c.committed is not None else c.attempted
        out[c.key.metric.name] = out.get(c.key.metric.name, 0) + int(value or 0)
    return out


def build_summary(counters: dict[str, int] | None, run: Run, finished_at: datetime, output: str) -> dict:
    """The run's summary; without counters (a runner that reports no metrics) it says so instead of
    showing zeros that would seem to reconcile."""
    if counters is None:
        return {"run_id": run.run_id, "output": output, "started_at": run.started_at.isoformat(),
                "finished_at": finished_at.isoformat(),
                "seconds": round((finished_at - run.started_at).total_seconds(), 3),
                "metrics_available": False, "reconciled": None}
    c = lambda name: counters.get(name, 0)  # noqa: E731
    rejects = {k.removeprefix("rejected_"): v for k, v in sorted(counters.items()) if k.startswith("rejected_")}
    accounted = c("articles_written") + c("entries_rejected") + c("entries_already_stored")
    return {
        "run_id": run.run_id,
        "output": output,
        "started_at": run.started_at.isoformat(),
        "finished_at": finished_at.isoformat(),
        "seconds": round((finished_at - run.started_at).total_seconds(), 3),
        "feeds": {"polled": c("feeds_polled"), "unchanged": c("feeds_unchanged"), "rejected": c("feeds_rejected"),
                  "ill_formed": c("feeds_bozo")},
        "entries": {
            "seen": c("entries_seen"),
            "articles_written": c("articles_written"),
            "rejected": c("entries_rejected"),
            "already_stored": c("entries_already_stored"),
        },
        "articles_written": c("articles_written"),
        "duplicates": {"exact": c("duplicates_exact"), "near": c("duplicates_near")},
        "stories": {"new": c("stories_new"), "continued": c("stories_continued"),
                    "index_restored": c("articles_restored_to_index")},
        "state": {"snapshots_unreadable": c("state_snapshots_unreadable")},
        "rejects": {"total": c("rejects_written"), "by_reason": rejects},
        "metrics_available": True,
        "reconciled": accounted == c("entries_seen"),
    }


def format_summary(s: dict) -> str:
    head = f"newsbeam run {s['run_id']} finished in {s['seconds']:.1f}s -> {s['output']}"
    if not s["metrics_available"]:
        return (f"{head}\n  counts:   unavailable, the runner reported no metrics: nothing here is reconciled "
                "(the datasets were written; count their rows)")
    e, d, st = s["entries"], s["duplicates"], s["stories"]
    reasons = ", ".join(f"{k}={v}" for k, v in s["rejects"]["by_reason"].items()) or "none"
    lines = [
        head,
        f"  feeds:    {s['feeds']['polled']} polled, {s['feeds']['unchanged']} unchanged, "
        f"{s['feeds']['rejected']} rejected, "
        f"{s['feeds']['ill_formed']} ill-formed but used",
        f"  entries:  {e['seen']} seen = {e['articles_written']} articles + {e['rejected']} rejected "
        f"+ {e['already_stored']} already stored" + ("" if s["reconciled"] else "  ** DOES NOT RECONCILE **"),
        f"  articles: {s['articles_written']} written ({d['exact']} exact copies, {d['near']} near copies)",
        f"  stories:  {st['new']} new, {st['continued']} continued"
        + (f" ({st['index_restored']} articles of interrupted runs restored to the index)"
           if st.get("index_restored") else ""),
        f"  rejects:  {s['rejects']['total']} ({reasons})",
    ]
    if s.get("state", {}).get("snapshots_unreadable"):
        lines.append(f"  state:    {s['state']['snapshots_unreadable']} damaged snapshot(s) passed over for the newest "
                     "older one that reads, if any (see the log); what they held is recovered from the datasets")
    return "\n".join(lines)


def save_summary(output: str, summary: dict) -> str:
    path = f"{output.rstrip('/')}/_runs/{summary['run_id']}.json"
    with FileSystems.create(path, compression_type="uncompressed") as f:
        f.write(json.dumps(summary, indent=2, sort_keys=True).encode())
    return path
