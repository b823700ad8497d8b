"""The stream as one unbounded pipeline on Prism, beside the loop of bounded runs, in one invocation.

    python benchmarks/stream_unbounded.py [--polls 1000] [--loop-polls 150] [--publish-every 20]
                                          [--per-publish 3] [--report 100]

A synthetic feed served on 127.0.0.1 (``benchmarks/stream_polls.py``'s: three write-ups of each event, the
feed lists its latest 50 entries) gains ``--per-publish`` articles every ``--publish-every`` seconds of wall
time, and is streamed with ``[stream] poll_interval = 1`` and a short story window (``--window-days``, by
default about 4 minutes, so that the polls outlast it and what is kept should stop growing):

1. by ``newsbeam stream --polls N`` on Prism (needs ``newsbeam install-runners``; skipped without it), and
2. by the loop of bounded runs (``--runner=DirectRunner``), for ``--loop-polls`` polls, as the reference.

For each it prints, every ``--report`` polls, the process's CPU time per poll over the last stretch (the
Python process, whose threads run the SDK workers, plus Prism's job server), the resident memory of both,
the bytes under ``_state/`` and the articles stored; and at the end the **freshness**: seconds from an
entry appearing in the feed to its row being readable in ``articles/`` (a reader lists and opens the
dataset every 0.2 s), whose goal is ``poll_interval`` + 5 s. The polls span ``--polls`` seconds of wall
time (1,000 polls: about 17 minutes). The figures are ratios of the two in one run; the machine is noisy.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from benchmarks.localserver import serve  # noqa: E402
from benchmarks.processes import cpu_and_rss, descendants  # noqa: E402
from benchmarks.stream_polls import SyntheticSite, answer, state_bytes  # noqa: E402


class Publisher(threading.Thread):
    """Adds articles to the feed every ``every`` seconds, recording when each link appeared."""

    def __init__(self, site: SyntheticSite, every: float, count: int):
        super().__init__(daemon=True)
        self.site, self.every, self.count = site, every, count
        self.appeared: dict[str, float] = {}
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.wait(self.every):
            before = len(self.site.items)
            self.site.publish(self.count, datetime.now(UTC))
            now = time.time()
            for n in range(before, len(self.site.items)):
                self.appeared[f"{self.site.base}/a/{n}"] = now


class Reader(threading.Thread):
    """Lists and reads ``articles/`` every 0.2 s, recording when each url first became readable."""

    def __init__(self, output: Path):
        super().__init__(daemon=True)
        self.output = output
        self.readable: dict[str, float] = {}
        self.opened: set[Path] = set()
        self.halt = threading.Event()

    def run(self) -> None:
        import pyarrow.parquet as pq

        while not self.halt.wait(0.2):
            for path in sorted((self.output / "articles").glob("*/*.parquet")):
                if path not in self.opened:
                    self.opened.add(path)
                    now = time.time()
                    for url in pq.read_table(path, columns=["url"]).column("url").to_pylist():
                        self.readable.setdefault(url, now)


class Lines(io.TextIOBase):
    """stdout of the stream: each poll line, as it comes, calls ``on_poll``."""

    def __init__(self, on_poll):
        self.on_poll, self.buffer_ = on_poll, ""

    def write(self, text: str) -> int:
        self.buffer_ += text
        while "\n" in self.buffer_:
            line, self.buffer_ = self.buffer_.split("\n", 1)
            if line.startswith("poll "):
                self.on_poll(line)
        return len(text)


def measure(name: str, work: Path, beam_args: list[str], polls: int, every: float, count: int, report: int,
            window_days: float) -> dict:
    from pipelines.cli import stream
    from pipelines.config import Config, FetchConfig, OutputConfig, StoriesConfig, StreamConfig
    from pipelines.records import FeedSpec

    site = SyntheticSite()
    server, site.base = serve(partial(answer, site))
    output = work / name
    config = Config(source="benchmark", feeds=(FeedSpec(url=f"{site.base}/feed.xml"),),
                    fetch=FetchConfig(allow_private_addresses=True, host_delay=0.0, retries=0, timeout=10.0),
                    stream=StreamConfig(poll_interval=1.0), stories=StoriesConfig(window_days=window_days),
                    output=OutputConfig(path=str(output)))
    publisher, reader = Publisher(site, every, count), Reader(output)
    publisher.start(), reader.start()
    me = os.getpid()
    samples: list[tuple[int, float, float, float, float]] = []  # (poll, cpu s, rss py, rss prism, latency)
    print(f"\n{name}: {polls} polls, 1 s apart; {count} articles every {every:g} s; window_days {window_days:g} "
          f"({window_days * 86400:.0f} s)")
    print(f"{'poll':>6} {'stored':>7} {'state KB':>9} {'CPU ms/poll':>12} {'py MB':>7} {'prism MB':>9} "
          f"{'poll s':>7}", flush=True)

    def on_poll(line: str) -> None:
        number = int(line.split()[1])
        cpu, rss = cpu_and_rss(me)
        prism_cpu, prism_rss = 0.0, 0.0
        for child in descendants(me):
            c, r = cpu_and_rss(child)
            prism_cpu, prism_rss = prism_cpu + c, prism_rss + r
        latency = float(line.split("(", 1)[1].split("s)", 1)[0])
        samples.append((number, cpu + prism_cpu, rss, prism_rss, latency))
        if number % report == 0 or number == 1:
            last = [s for s in samples if s[0] > number - report]
            per_poll = (samples[-1][1] - last[0][1]) / max(1, len(last) - 1) * 1000
            print(f"{number:>6} {len(reader.readable):>7} {state_bytes(output) / 1024:>9.1f} {per_poll:>12.0f} "
                  f"{rss:>7.0f} {prism_rss:>9.0f} {statistics.mean(s[4] for s in last):>7.2f}", file=sys.__stdout__,
                  flush=True)

    with contextlib.redirect_stdout(Lines(on_poll)):
        stream(config, beam_args, threading.Event(), polls)
    time.sleep(1.0)  # the reader's last look
    publisher.halt.set(), reader.halt.set()
    server.shutdown()
    waits = sorted(reader.readable[url] - at for url, at in publisher.appeared.items() if url in reader.readable)
    missing = [url for url in publisher.appeared if url not in reader.readable]
    published_late = len(missing)  # published after the last poll: not read yet
    result = {"freshness": waits, "samples": samples, "missing": published_late}
    if waits:
        print(f"freshness ({len(waits)} articles): median {statistics.median(waits):.2f}s, "
              f"p90 {waits[int(len(waits) * 0.9)]:.2f}s, max {waits[-1]:.2f}s (goal: poll_interval + 5 = 6 s); "
              f"{published_late} published after the last poll")
    return result


def _cost(samples: list, first: bool, span: int) -> float:
    """CPU ms per poll over the first or the last ``span`` polls."""
    part = samples[:span] if first else samples[-span:]
    return (part[-1][1] - part[0][1]) / max(1, len(part) - 1) * 1000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--polls", type=int, default=1000)
    parser.add_argument("--loop-polls", type=int, default=150)
    parser.add_argument("--publish-every", type=float, default=20.0)
    parser.add_argument("--per-publish", type=int, default=3)
    parser.add_argument("--report", type=int, default=100)
    parser.add_argument("--window-days", type=float, default=0.003,
                        help="the story window (and how long keys seen are kept): short, so the polls outlast it")
    args = parser.parse_args(argv)
    from pipelines import runners

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        loop = measure("loop", work, ["--runner=DirectRunner"], args.loop_polls, args.publish_every,
                       args.per_publish, max(1, min(args.report, args.loop_polls // 3)), args.window_days)
        if not runners.prism_path().is_file():
            print("\nPrism is not installed (newsbeam install-runners): the unbounded stream is not measured")
            return 0
        prism = measure("prism", work, [f"--prism_location={runners.prism_path()}"], args.polls,
                        args.publish_every, args.per_publish, args.report, args.window_days)
    span = max(2, min(50, args.loop_polls // 3))
    print("\nsummary (ratios: the unbounded stream on Prism / the loop of bounded runs, same invocation)")
    for name, first in (("first", True), ("last", False)):
        p, lo = _cost(prism["samples"], first, span), _cost(loop["samples"], first, span)
        print(f"  CPU per poll, {name} {span} polls: prism {p:.0f} ms, loop {lo:.0f} ms = {p / lo:.3f}x")
    print(f"  CPU per poll on Prism, polls 2-{span + 1} vs the last {span} of {args.polls}: "
          f"{_cost(prism['samples'][1:], True, span):.0f} ms -> {_cost(prism['samples'], False, span):.0f} ms")
    for key in ("freshness",):
        if prism[key] and loop[key]:
            p, lo = statistics.median(prism[key]), statistics.median(loop[key])
            print(f"  median freshness: prism {p:.2f}s, loop {lo:.2f}s = {p / lo:.2f}x")
    print(f"  resident MB on Prism at poll {span} and {args.polls}: python "
          f"{prism['samples'][span - 1][2]:.0f} -> {prism['samples'][-1][2]:.0f}, prism "
          f"{prism['samples'][span - 1][3]:.0f} -> {prism['samples'][-1][3]:.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
