"""Streaming: how long a poll takes, and whether the state beside the dataset stays bounded over many polls.

    python benchmarks/stream_polls.py [--polls 1000] [--per-poll 3] [--interval 300] [--report 50]
                                      [--idle-polls 100]

1. Poll time on the fixtures: ``newsbeam stream --polls 3`` over ``configs/fixtures.toml`` (the first poll
   stores everything, the others find every feed unchanged), and, as the reference measured in the same
   invocation, a batch run of the same job into an empty output. Then the files that ``--idle-polls`` more
   polls of the same stored output add anywhere under it (goal: none).
2. State size: a synthetic feed served on 127.0.0.1 gains ``--per-poll`` articles each poll (three write-ups
   of each event; the feed lists its latest 50 entries), polled ``--polls`` times on a simulated clock
   ``--interval`` seconds apart that ends now. Every ``--report`` polls it prints the bytes under
   ``_state/`` (story index, feed validators), the stories the index holds and the poll's time. With the
   defaults the polls span 3.5 days, past the default ``window_days`` of 3, after which the index should stop
   growing. Needs nothing outside the checkout.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from benchmarks.localserver import NOT_FOUND, Answer, serve  # noqa: E402

FEED_LENGTH = 50

FILLER = ("the officials said on that day a statement was released and the report noted that many people "
          "were waiting for more details about what happened next while local groups asked questions").split()


class SyntheticSite:
    """Articles appear as the simulated clock advances: ``publish`` adds the next ones at a time."""

    def __init__(self, seed: int = 7):
        self.rng = random.Random(seed)
        self.items: list[tuple[int, datetime]] = []  # (article number, published)
        self.base = ""

    def publish(self, count: int, when: datetime) -> None:
        start = len(self.items)
        self.items += [(start + k, when) for k in range(count)]

    def feed(self) -> bytes:
        items = "".join(
            f"<item><title>Report {n}</title><link>{self.base}/a/{n}</link>"
            f"<pubDate>{format_datetime(when)}</pubDate></item>" for n, when in reversed(self.items[-FEED_LENGTH:]))
        return (f'<?xml version="1.0"?><rss version="2.0"><channel><title>Synthetic</title><link>{self.base}/'
                f"</link><description>d</description>{items}</channel></rss>").encode()

    def page(self, n: int) -> bytes:
        event = n // 3  # three write-ups per event: its own rare words, each write-up its own sentences
        rng = random.Random(n)
        names = [f"zq{event:05d}{suffix}" for suffix in ("alpha", "brook", "cinder", "delta", "ember", "fjord")]
        sentences = []
        for s in range(8):
            words = rng.sample(FILLER, 12) + rng.sample(names, 3) + [f"w{n}x{s}"]
            rng.shuffle(words)
            sentences.append(" ".join(words).capitalize() + ".")
        when = self.items[n][1].isoformat()
        body = "".join(f"<p>{' '.join(sentences[i:i + 2])}</p>" for i in range(0, 8, 2))
        return (f'<html><head><title>{names[0]} {names[1]} report {n}</title>'
                f'<meta property="article:published_time" content="{when}"></head>'
                f"<body><article><h1>{names[0]} {names[1]} report {n}</h1>{body}</article></body></html>").encode()


def answer(site: SyntheticSite, path: str) -> Answer:
    if path == "/feed.xml":
        return 200, "application/rss+xml", site.feed()
    if path.startswith("/a/") and path[3:].isdigit() and int(path[3:]) < len(site.items):
        return 200, "text/html; charset=utf-8", site.page(int(path[3:]))
    return NOT_FOUND


def state_bytes(output: Path) -> int:
    return sum(p.stat().st_size for p in (output / "_state").rglob("*") if p.is_file())


def index_stories(output: Path) -> int:
    from pipelines.stories.index import load_index

    return len(load_index(str(output / "_state" / "stories"))[0].stories)


def fixtures_poll_time(work: Path, idle_polls: int) -> None:
    import contextlib
    import io
    import re
    import threading
    from dataclasses import replace

    from pipelines.cli import main, stream
    from pipelines.config import OutputConfig, StreamConfig, load_config

    for attempt in ("warm-up", "batch"):  # the first pipeline of a process pays Beam's one-off start-up costs
        start = time.perf_counter()
        assert main(["run", "--config", str(ROOT / "configs" / "fixtures.toml"), "--output",
                     str(work / attempt)]) == 0
        batch = time.perf_counter() - start
    print()
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["stream", "--config", str(ROOT / "configs" / "fixtures.toml"), "--output",
                     str(work / "stream"), "--polls", "3"]) == 0
    first, *rest = [float(s) for s in re.findall(r"^poll \d+ \S+ \(([\d.]+)s\)", printed.getvalue(), re.M)]
    print(f"\nfixtures: batch run {batch:.2f}s; poll 1 (stores everything) {first:.2f}s = {first / batch:.2f}x the "
          f"batch run; later polls (nothing new) {', '.join(f'{s:.2f}s' for s in rest)} = "
          f"{sum(rest) / len(rest) / batch:.2f}x")
    if idle_polls:
        output = work / "stream"
        files = lambda: {p for p in output.rglob("*") if p.is_file()}  # noqa: E731
        before = files()
        config = replace(load_config(ROOT / "configs" / "fixtures.toml"), output=OutputConfig(path=str(output)),
                         stream=StreamConfig(poll_interval=0.01))
        with contextlib.redirect_stdout(io.StringIO()):
            stream(config, [], threading.Event(), idle_polls)
        added = sorted(str(p.relative_to(output)) for p in files() - before)
        print(f"{idle_polls} more polls finding nothing new added {len(added)} file(s) under the output: "
              + (", ".join(added) or "none"))


def state_over_polls(work: Path, polls: int, per_poll: int, interval: float, report: int) -> None:
    from pipelines.cli import run_once
    from pipelines.config import Config, FetchConfig, OutputConfig
    from pipelines.records import FeedSpec, Run

    site = SyntheticSite()
    server, site.base = serve(partial(answer, site))
    output = work / "synthetic"
    config = Config(source="benchmark", feeds=(FeedSpec(url=f"{site.base}/feed.xml"),),
                    fetch=FetchConfig(allow_private_addresses=True, host_delay=0.0, retries=0, timeout=10.0),
                    output=OutputConfig(path=str(output)))
    end = datetime.now(UTC).replace(microsecond=0)
    start = end - timedelta(seconds=interval * (polls - 1))
    print(f"\nsynthetic feed: {polls} polls {interval:g}s apart ({(end - start).total_seconds() / 86400:.2f} days), "
          f"{per_poll} new articles a poll, window_days {config.stories.window_days:g}")
    print(f"{'poll':>6} {'sim. day':>8} {'articles':>8} {'state KB':>9} {'stories held':>12} {'poll s':>7}")
    stored = 0
    for k in range(polls):  # each poll as `newsbeam stream` runs it, with the simulated clock's start time
        now = start + timedelta(seconds=interval * k)
        site.publish(per_poll, now - timedelta(seconds=60))
        t0 = time.perf_counter()
        summary = run_once(config, [], Run(f"{now:%Y%m%dT%H%M%SZ}-bench{k:05d}", now))
        seconds = time.perf_counter() - t0
        stored += summary["articles_written"]
        if not summary["reconciled"]:
            print(f"poll {k + 1}: does not reconcile: {summary['entries']}", file=sys.stderr)
        if (k + 1) % report == 0 or k in (0, polls - 1):
            print(f"{k + 1:>6} {(now - start).total_seconds() / 86400:>8.2f} {stored:>8} "
                  f"{state_bytes(output) / 1024:>9.1f} {index_stories(output):>12} {seconds:>7.2f}", flush=True)
    server.shutdown()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--polls", type=int, default=1000)
    parser.add_argument("--per-poll", type=int, default=3)
    parser.add_argument("--interval", type=float, default=300.0)
    parser.add_argument("--report", type=int, default=50)
    parser.add_argument("--skip-fixtures", action="store_true")
    parser.add_argument("--idle-polls", type=int, default=100)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if not args.skip_fixtures:
            fixtures_poll_time(work, args.idle_polls)
        state_over_polls(work, args.polls, args.per_poll, args.interval, args.report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
