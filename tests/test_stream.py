"""Streaming mode: polls of a feed that grows, against a real server on 127.0.0.1, as one unbounded pipeline on
Prism (skipped when ``newsbeam install-runners`` has not run) and as the loop of bounded runs in process;
switches between streams and batch runs; stopping by signal and by kill -9; the pure parts of the loop."""

import json
import signal
import subprocess
import sys
import threading
import time
import tomllib
from collections import Counter
from datetime import UTC, datetime
from functools import partial
from xml.sax.saxutils import escape

import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from benchmarks.localserver import NOT_FOUND, Answer, serve
from benchmarks.processes import descendants, running
from pipelines.cli import LOCKED, main
from pipelines.records import Run
from pipelines.stream import add_poll, poll_line, run_stream, stream_summary
from tests.conftest import FIXTURES, ROOT, needs_prism

# the two ways a stream runs: one unbounded pipeline on Prism (the default), a loop of runs in process
MODES = [pytest.param([], id="prism", marks=needs_prism), pytest.param(["--runner=DirectRunner"], id="loop")]
REPLAY = tomllib.loads((FIXTURES / "replay.toml").read_text())["response"]
SEEDS = [r["url"] for r in REPLAY[:5]]  # five outlets' write-ups of one event: one story
GONE = "/gone/a-page-that-was-removed"


def _path(url: str) -> str:
    return "/" + url.split("://", 1)[1]


class Site:
    """A news site whose feed grows: the k-th request of the feed lists the first k chunks of entries."""

    def __init__(self, chunks: list[list[str]]):
        self.chunks = chunks
        self.pages = {_path(r["url"]): (FIXTURES / r["file"]).read_bytes() for r in REPLAY if "file" in r}
        self.hits: Counter = Counter()
        self.base = ""

    def feed(self, request_number: int) -> bytes:
        paths = [p for chunk in self.chunks[:request_number] for p in chunk]
        items = "".join(f"<item><title>entry {i}</title><link>{escape(self.base + p)}</link></item>"
                        for i, p in enumerate(paths))
        return (f'<?xml version="1.0"?><rss version="2.0"><channel><title>Growing</title>'
                f"<link>{self.base}/</link><description>d</description>{items}</channel></rss>").encode()

    def served_links(self) -> set[str]:
        return {self.base + p for chunk in self.chunks[:self.hits["/feed.xml"]] for p in chunk}


def answer(site: Site, path: str) -> Answer:
    site.hits[path] += 1
    if path == "/feed.xml":
        return 200, "application/rss+xml", site.feed(site.hits[path])
    if path in site.pages:
        return 200, "text/html; charset=utf-8", site.pages[path]
    return NOT_FOUND


@pytest.fixture
def site():
    others = [_path(r["url"]) for r in REPLAY[5:] if "file" in r]
    seeds = [_path(u) for u in SEEDS]
    chunks = [[seeds[0], GONE, *others[0:5]], [seeds[1], seeds[2], *others[5:10]], [seeds[3], *others[10:15]],
              [seeds[4], *others[15:]]]
    s = Site(chunks)
    server, s.base = serve(partial(answer, s))
    yield s
    server.shutdown()


def config_for(tmp_path, site: Site, interval: float = 0.2):
    path = tmp_path / "stream.toml"
    path.write_text(f'[[feeds]]\nurl = "{site.base}/feed.xml"\n[fetch]\nallow_private_addresses = true\n'
                    f'host_delay = 0.0\nretries = 0\ntimeout = 10.0\n[stream]\npoll_interval = {interval}\n'
                    f'[output]\npath = "{tmp_path / "out"}"\n')
    return str(path)


def rows(out, name: str, columns: list[str]) -> list[dict]:
    return ds.dataset(str(out / name), format="parquet", partitioning="hive").to_table(columns=columns).to_pylist()


def assert_each_served_entry_ends_once(out, site: Site):
    """Every link the feed listed is an article row or an entry-level reject row, exactly once."""
    ended = Counter(r["url"] for r in rows(out, "articles", ["url"]))
    ended.update(r["url"] for r in rows(out, "rejects", ["url", "feed_url"]) if r["feed_url"] is not None)
    assert ended == Counter(site.served_links())
    pages = [p for p in site.hits if p not in ("/feed.xml", "/robots.txt")]  # robots.txt: once per poll
    assert all(site.hits[p] == 1 for p in pages), {p: n for p, n in site.hits.items() if n > 1}


def seed_stories(out) -> set[str]:
    return {r["story_id"] for r in rows(out, "articles", ["url", "story_id"])
            if r["url"].split("/", 3)[3] in {_path(u)[1:] for u in SEEDS}}


@pytest.mark.parametrize("mode", MODES)
def test_a_stream_stores_each_entry_of_a_growing_feed_once(tmp_path, site, capsys, mode):
    assert main(["stream", "--config", config_for(tmp_path, site), "--polls", "3", *mode]) == 0
    out = tmp_path / "out"
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[:2] for line in lines[:3]] == [["poll", "1"], ["poll", "2"], ["poll", "3"]]
    assert "stopped (polls) after 3 polls" in lines[3] and "RECONCILE" not in "".join(lines), "\n".join(lines)
    assert site.hits["/feed.xml"] == 3
    assert_each_served_entry_ends_once(out, site)
    assert seed_stories(out) and len(seed_stories(out)) == 1  # one story across three polls

    summaries = {p.stem: json.loads(p.read_text()) for p in (out / "_runs").glob("*.json")}
    stream = next(s for s in summaries.values() if s.get("kind") == "stream")
    polls = sorted((s for s in summaries.values() if s.get("stream") == stream["run_id"]), key=lambda s: s["run_id"])
    assert stream["last_poll"] == polls[-1]["run_id"]
    assert stream["polls"] == 3 and stream["stopped_by"] == "polls" and stream["reconciled"] is True
    assert [p["entries"]["seen"] for p in polls] == [7, 14, 20]  # the feed lists what earlier polls stored
    assert [p["entries"]["already_stored"] for p in polls] == [0, 7, 14]  # ... and its dead link, once rejected
    assert stream["entries"]["seen"] == sum(p["entries"]["seen"] for p in polls)
    assert stream["entries"]["articles_written"] == len(rows(out, "articles", ["url"])) == 19
    assert stream["stories"]["continued"] >= 2  # the event's later write-ups joined its story


@pytest.mark.parametrize("mode", MODES)
def test_idle_polls_add_no_file(tmp_path, site, capsys, mode):
    """Once a stream has stored what its feeds hold, a poll that finds nothing new adds no file anywhere: no
    dataset file, no state snapshot, no poll summary (the stream's own summary, rewritten, counts it)."""
    site.chunks = [[p for chunk in site.chunks for p in chunk]]  # a feed that no longer grows
    config = config_for(tmp_path, site, interval=0.05)
    out = tmp_path / "out"
    listing = lambda: sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())  # noqa: E731
    assert main(["stream", "--config", config, "--polls", "1", *mode]) == 0
    after_one = listing()
    assert main(["stream", "--config", config, "--polls", "6", *mode]) == 0
    added = sorted(set(listing()) - set(after_one))
    (summary,) = added  # the second stream's summary alone
    assert summary.startswith("_runs/") and json.loads((out / summary).read_text())["polls"] == 6
    assert set(after_one) <= set(listing())
    lines = capsys.readouterr().out.splitlines()
    assert site.hits["/feed.xml"] == 7
    assert sum("feeds 1 polled (1 unchanged, 0 failing); entries 0 seen" in line for line in lines) == 6


@needs_prism
def test_batch_runs_and_a_stream_take_over_from_each_other(tmp_path, site, capsys):
    config = config_for(tmp_path, site)
    assert main(["run", "--config", config]) == 0  # batch: chunk 1
    assert main(["stream", "--config", config, "--polls", "2"]) == 0  # stream: chunks 2 and 3
    assert main(["run", "--config", config]) == 0  # batch: chunk 4
    out = tmp_path / "out"
    assert_each_served_entry_ends_once(out, site)
    assert len(seed_stories(out)) == 1  # the batch runs' and the stream's write-ups of one event: one story
    before = len(rows(out, "articles", ["url"]))
    assert main(["stream", "--config", config, "--polls", "1"]) == 0  # the feed no longer grows ...
    assert len(rows(out, "articles", ["url"])) == before == 26
    # ... which the stream knows from the feed state the batch run saved
    assert "feeds 1 polled (1 unchanged, 0 failing); entries 0 seen" in capsys.readouterr().out


@pytest.mark.parametrize("mode", MODES)
def test_a_stop_signal_ends_the_stream_after_its_poll_and_the_lock_is_held_until_then(tmp_path, site, mode):
    config = config_for(tmp_path, site, interval=0.5)
    proc = subprocess.Popen([sys.executable, "-m", "pipelines", "stream", "--config", config, *mode], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().startswith("poll 1 ")
        assert main(["run", "--config", config]) == LOCKED  # the stream owns the output between polls too
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "stopped (signal)" in out.splitlines()[-1] and "SIGTERM" in err
    stream = [json.loads(p.read_text()) for p in (tmp_path / "out" / "_runs").glob("*.json")]
    stream = next(s for s in stream if s.get("kind") == "stream")
    assert stream["stopped_by"] == "signal" and stream["reconciled"] is True and stream["polls"] >= 1
    assert main(["run", "--config", config]) == 0  # released: a batch run continues
    assert_each_served_entry_ends_once(tmp_path / "out", site)


@needs_prism
@pytest.mark.parametrize("after", [0.3, 1.2])
def test_a_stream_killed_outright_then_restarted_stores_nothing_twice_and_loses_nothing(tmp_path, site, after):
    """kill -9 at some moment of the second poll (the feed has grown), then a restart: every entry the feed
    served ends once, the seeds are one story, and no reader ever meets a partial file."""
    config = config_for(tmp_path, site, interval=1)
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "pipelines", "stream", "--config", config], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().startswith("poll 1 ")
        time.sleep(after)
        runner = descendants(proc.pid)  # the Prism job server newsbeam started, and what ties it to newsbeam
        proc.kill()
        proc.wait(timeout=30)
    finally:
        proc.kill()
    assert runner and _gone(runner), "Prism outlived the stream it ran"
    for name in ("articles", "stories", "rejects", "stories_current"):  # what a reader finds: whole files
        for path in (out / name).rglob("*"):
            if path.is_file():
                pq.read_table(path)
    assert main(["stream", "--config", config, "--polls", "3"]) == 0
    ended = Counter(r["url"] for r in rows(out, "articles", ["url"]))
    ended.update(r["url"] for r in rows(out, "rejects", ["url", "feed_url"]) if r["feed_url"] is not None)
    assert ended == Counter(site.served_links())
    assert len(seed_stories(out)) == 1
    assert not [p for p in (out / "_tmp").rglob("*") if p.is_file()]


def _gone(pids: list[int], within: float = 10.0) -> bool:
    deadline = time.monotonic() + within
    while any(running(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    return not any(running(pid) for pid in pids)


# --- the loop itself, without Beam ---

SUMMARY = {"run_id": "r", "seconds": 1.0, "metrics_available": True, "reconciled": True,
           "feeds": {"polled": 2, "unchanged": 1, "failing": 0, "rejected": 0, "ill_formed": 0},
           "entries": {"seen": 5, "articles_written": 3, "rejected": 1, "already_stored": 1},
           "articles_written": 3, "duplicates": {"exact": 0, "near": 1},
           "stories": {"new": 2, "continued": 1, "index_restored": 0}, "state": {"snapshots_unreadable": 0},
           "rejects": {"total": 1, "by_reason": {"http_4xx": 1}}}
STREAM = Run("20261130T000000Z-abcdef", datetime(2026, 11, 30, tzinfo=UTC))


def test_poll_line_and_stream_summary_add_up_the_polls():
    line = poll_line(4, SUMMARY)
    assert line.startswith("poll 4 r (1.0s): feeds 2 polled (1 unchanged, 0 failing); entries 5 seen = 3 stored")
    other = {**SUMMARY, "run_id": "s", "rejects": {"total": 2, "by_reason": {"timeout": 2}}}
    totals = add_poll(add_poll(None, SUMMARY), other)
    total = stream_summary(STREAM, totals, STREAM.started_at, "out", 60.0, "polls")
    assert total["entries"] == {"seen": 10, "articles_written": 6, "rejected": 2, "already_stored": 2}
    assert total["rejects"] == {"total": 3, "by_reason": {"http_4xx": 1, "timeout": 2}}
    assert total["polls"] == 2 and total["last_poll"] == "s" and total["reconciled"] is True
    assert total["kind"] == "stream" and SUMMARY["entries"]["seen"] == 5  # the polls' own summaries untouched
    blind = stream_summary(STREAM, add_poll(totals, {"run_id": "t", "metrics_available": False}),
                           STREAM.started_at, "out", 60.0, "polls")
    assert blind["reconciled"] is None and "entries" not in blind and blind["polls"] == 3
    none = stream_summary(STREAM, None, STREAM.started_at, "out", 60.0, "signal")
    assert none["polls"] == 0 and none["entries"] is None and none["reconciled"] is True


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_polls_keep_a_fixed_schedule_and_an_overrun_does_not_cause_a_burst(tmp_path, monkeypatch):
    clock, starts, waits = FakeClock(), [], []
    durations = iter([1.0, 25.0, 1.0, 1.0])  # the second poll overruns a 10 s interval

    def poll():
        starts.append(clock.now)
        clock.now += next(durations)
        return {**SUMMARY, "run_id": f"p{len(starts)}"}

    class Stop(threading.Event):
        def wait(self, timeout=None):
            waits.append(timeout)
            clock.now += timeout
            return False

    summary = run_stream(STREAM, str(tmp_path), 10.0, poll, Stop(), polls=4, say=lambda _: None, clock=clock)
    assert starts == [0.0, 10.0, 35.0, 45.0] and waits == [9.0, 0.0, 9.0]
    assert summary["polls"] == 4 and summary["stopped_by"] == "polls"
    assert json.loads((tmp_path / "_runs" / f"{STREAM.run_id}.json").read_text())["polls"] == 4


def test_a_stop_request_ends_the_loop_after_the_poll_under_way(tmp_path):
    stop = threading.Event()

    def poll():
        stop.set()  # the signal arrives during the poll
        return SUMMARY

    summary = run_stream(STREAM, str(tmp_path), 300.0, poll, stop, say=lambda _: None)
    assert summary["polls"] == 1 and summary["stopped_by"] == "signal"


def test_polls_must_be_a_positive_whole_number(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["stream", "--config", "x.toml", "--polls", "0"])
    assert exit_.value.code == 2 and "--polls" in capsys.readouterr().err



def stored(out) -> dict[str, list]:
    """What a history stored, without run ids and times: articles with their story and original, stories'
    members, rejects."""
    articles = rows(out, "articles", ["url", "article_id", "story_id", "duplicate_of", "content_hash"])
    stories = rows(out, "stories", ["story_id", "article_count", "run_id"])
    latest = {}
    for s in sorted(stories, key=lambda s: s["run_id"]):
        latest[s["story_id"]] = s["article_count"]
    rejects = rows(out, "rejects", ["url", "stage", "reason"])
    return {"articles": sorted(tuple(sorted(a.items())) for a in articles),
            "stories": sorted(latest.items()),
            "rejects": sorted(tuple(sorted(r.items())) for r in rejects)}


@needs_prism
def test_a_stream_stores_what_batch_runs_store_on_the_same_feed_history(tmp_path, site):
    streamed, batched = tmp_path / "streamed", tmp_path / "batched"
    streamed.mkdir(), batched.mkdir()
    assert main(["stream", "--config", config_for(streamed, site), "--polls", "4"]) == 0
    site.hits.clear()  # the feed starts again from its first chunk
    for _ in range(4):
        assert main(["run", "--config", config_for(batched, site)]) == 0
    a, b = stored(streamed / "out"), stored(batched / "out")
    assert a == b and len(a["articles"]) == 26 and len(a["rejects"]) == 1
