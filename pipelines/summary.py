"""The run summary: built from the pipeline's counters, printed and saved beside the data.

Reconciliation: every feed entry ends as an article row, an entry-level reject row, or an entry
recognised as already stored, so ``entries_seen == articles_written + entries_rejected +
entries_already_stored``. Feed-level rejects (a feed that failed as a whole) have no entries; a feed that
fails as it did last time counts as failing but is not stored again in ``rejects/``: the summary lists every
failing feed, its reason and since when (from the feed states the run committed).
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


def build_summary(counters: dict[str, int] | None, run: Run, finished_at: datetime, output: str,
                  datasets: dict | None = None, failing: list[dict] | None = None) -> dict:
    """The run's summary; without counters (a runner that reports no metrics) it says so instead of
    showing zeros that would seem to reconcile. ``datasets``: what the check of the datasets' files did
    (``pipelines.datasets``); ``failing``: the feeds failing after the run."""
    head = {"run_id": run.run_id, "output": output, "started_at": run.started_at.isoformat(),
            "finished_at": finished_at.isoformat(), "seconds": round((finished_at - run.started_at).total_seconds(), 3),
            "datasets": datasets or {}, "failing_feeds": failing or []}
    if counters is None:
        return {**head, "metrics_available": False, "reconciled": None}
    c = lambda name: counters.get(name, 0)  # noqa: E731
    rejects = {k.removeprefix("rejected_"): v for k, v in sorted(counters.items()) if k.startswith("rejected_")}
    accounted = c("articles_written") + c("entries_rejected") + c("entries_already_stored")
    return {
        **head,
        "feeds": {"polled": c("feeds_polled"), "unchanged": c("feeds_unchanged"), "failing": c("feeds_failing"),
                  "rejected": c("feeds_rejected"), "ill_formed": c("feeds_bozo")},
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


def stored_anything(s: dict) -> bool:
    """Whether a run stored a row or changed a dataset's files (or cannot say: no metrics)."""
    if not s["metrics_available"]:
        return True
    ds = s.get("datasets") or {}
    return bool(s["articles_written"] or s["rejects"]["total"] or s["stories"]["new"] or s["stories"]["continued"]
                or ds.get("files_upgraded") or ds.get("files_set_aside") or ds.get("leftovers_removed"))


def format_summary(s: dict) -> str:
    head = f"newsbeam run {s['run_id']} finished in {s['seconds']:.1f}s -> {s['output']}"
    if not s["metrics_available"]:
        return (f"{head}\n  counts:   unavailable, the runner reported no metrics: nothing here is reconciled "
                "(the datasets were written; count their rows)")
    e, d, st, f = s["entries"], s["duplicates"], s["stories"], s["feeds"]
    reasons = ", ".join(f"{k}={v}" for k, v in s["rejects"]["by_reason"].items()) or "none"
    failing = f"{f['failing']} failing"
    if f["failing"]:  # a feed failing as it did last run is not stored again in rejects/
        failing += f" ({f['rejected']} new, {f['failing'] - f['rejected']} as before)"
    lines = [
        head,
        f"  feeds:    {f['polled']} polled, {f['unchanged']} unchanged, {failing}, {f['ill_formed']} ill-formed but "
        "used",
        f"  entries:  {e['seen']} seen = {e['articles_written']} articles + {e['rejected']} rejected "
        f"+ {e['already_stored']} already stored" + ("" if s["reconciled"] else "  ** DOES NOT RECONCILE **"),
        f"  articles: {s['articles_written']} written ({d['exact']} exact copies, {d['near']} near copies)",
        f"  stories:  {st['new']} new, {st['continued']} continued"
        + (f" ({st['index_restored']} articles of interrupted runs restored to the index)"
           if st.get("index_restored") else ""),
        f"  rejects:  {s['rejects']['total']} ({reasons})",
    ]
    lines += [f"  failing:  {x['url']} ({x['reason']} since {x['since']})" for x in s.get("failing_feeds", [])]
    ds = s.get("datasets") or {}
    if ds.get("files_upgraded"):
        lines.append(f"  datasets: {ds['files_upgraded']} file(s) of older schema versions rewritten to the current "
                     "one")
    if ds.get("files_set_aside"):
        lines.append(f"  datasets: {len(ds['files_set_aside'])} damaged file(s) set aside in _damaged/ (their entries "
                     "are fetched again): " + ", ".join(ds["files_set_aside"]))
    if ds.get("stories_current_rebuilt") is not None:
        lines.append(f"  datasets: stories_current made again from stories/ ({ds['stories_current_rebuilt']} stories)")
    if s.get("state", {}).get("snapshots_unreadable"):
        lines.append(f"  state:    {s['state']['snapshots_unreadable']} damaged snapshot(s) passed over for the newest "
                     "older one that reads, if any (see the log); what they held is recovered from the datasets")
    return "\n".join(lines)


def save_summary(output: str, summary: dict) -> str:
    path = f"{output.rstrip('/')}/_runs/{summary['run_id']}.json"
    with FileSystems.create(path, compression_type="uncompressed") as f:
        f.write(json.dumps(summary, indent=2, sort_keys=True).encode())
    return path
