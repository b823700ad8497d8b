"""End to end, as a user runs it: pages/s of ``newsbeam run`` against a plain loop, two workers against one,
and the peak memory of the whole process tree.

    python benchmarks/pipeline_scale.py [--sizes 250,1000,4000,20000] [--repeat 1] [--data DIR]

Corpus: N pages made from the article pages of ``../shared/eval/extraction/scrapinghub`` (skipped with a
message when absent), page i being page ``i mod 181`` with a sentence of its own added to its first
paragraph and its canonical and ``og:url`` links removed, so each copy is a distinct article. The benchmark
serves them on 127.0.0.1 (keep-alive, TCP_NODELAY: without it each keep-alive request stalls ~40 ms) in
RSS feeds of 50 entries, and for each N runs, in the same invocation and each as its own process:

- ``reference``: a plain loop in one process: urllib fetches each feed (feedparser) and each page, and
  ``trafilatura.extract`` extracts it;
- ``newsbeam``: ``newsbeam run`` on the default in-process runner, into an empty output;
- ``newsbeam x2``: the same with ``--direct_running_mode=multi_processing --direct_num_workers=2``;
- ``newsbeam prism``: the same on Beam's Prism runner (``--runner=PrismRunner``), when ``newsbeam
  install-runners`` has installed it;
- ``stage work``: the reference's loop with newsbeam's own per-page work in place of ``trafilatura.extract``
  (``extract_article`` and the story features, as the pipeline computes them), without Beam: what the
  pipeline would cost with no runner at all, so its ratio to the reference bounds the in-process run's.

Printed per N: seconds, pages/s, the ratio to the reference's pages/s, the two-worker speed-up over the
in-process run, and the peak resident memory of each process tree (sampled every 50 ms from /proc), with
the growth per article between the smallest and each larger N. First, the fixed cost: the fastest of three
runs over one page, of ``newsbeam run`` (in process, and on Prism when installed) and of the reference.
Last, the goals of issue 11, each with its figure and whether it is met; for two workers also the most any
split of the per-page work could give (Amdahl's bound: the in-process run's fixed cost F stays serial,
``T / (F + (T - F) / 2)``).
"""

from __future__ import annotations

import argparse
import gzip
import os
import re
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from benchmarks.localserver import NOT_FOUND, Answer, serve  # noqa: E402

DATA = ROOT.parent / "shared" / "eval" / "extraction" / "scrapinghub"
PER_FEED = 50
_CANONICAL = re.compile(rb"<link[^>]*\bcanonical\b[^>]*>|<meta[^>]*og:url[^>]*>", re.I)

REFERENCE = r'''
import sys, urllib.request, feedparser, trafilatura
base, feeds = sys.argv[1], int(sys.argv[2])
pages = 0
for k in range(feeds):
    feed = feedparser.parse(urllib.request.urlopen(f"{base}/feed/{k}.xml", timeout=30).read())
    for entry in feed.entries:
        html = urllib.request.urlopen(entry.link, timeout=30).read()
        if trafilatura.extract(html, include_comments=False):
            pages += 1
print(pages)
'''

STAGE_WORK = r'''
import sys, urllib.request, feedparser
from datetime import UTC, datetime
from pipelines.extract import ExtractError, extract_article
from pipelines.records import FeedEntry, Page, Run
from pipelines.stories.assign import features_of
base, feeds = sys.argv[1], int(sys.argv[2])
run = Run("stage-work", datetime.now(UTC))
pages = 0
for k in range(feeds):
    feed = feedparser.parse(urllib.request.urlopen(f"{base}/feed/{k}.xml", timeout=30).read())
    for entry in feed.entries:
        response = urllib.request.urlopen(entry.link, timeout=30)
        page = Page(FeedEntry(f"{base}/feed/{k}.xml", entry.link), response.url, response.status,
                    response.headers.get("Content-Type"), response.read(), datetime.now(UTC))
        try:
            features_of(extract_article(page), run)
        except ExtractError:
            continue
        pages += 1
print(pages)
'''


class Corpus:
    def __init__(self, data: Path, size: int):
        self.bases = [_CANONICAL.sub(b"", gzip.decompress(p.read_bytes()))
                      for p in sorted((data / "html").glob("*.html.gz"))]
        self.size = size
        self.base = ""

    def page(self, i: int) -> bytes:
        sentence = f" This copy, number {i}, was made for the newsbeam scale benchmark.</p>".encode()
        return self.bases[i % len(self.bases)].replace(b"</p>", sentence, 1)

    def feed(self, k: int) -> bytes:
        items = "".join(f"<item><title>page {i}</title><link>{self.base}/p/{i}</link></item>"
                        for i in range(k * PER_FEED, min(self.size, (k + 1) * PER_FEED)))
        return (f'<?xml version="1.0"?><rss version="2.0"><channel><title>scale {k}</title>'
                f"<link>{self.base}/</link><description>d</description>{items}</channel></rss>").encode()

    @property
    def feeds(self) -> int:
        return -(-self.size // PER_FEED)


def answer(corpus: Corpus, path: str) -> Answer:
    m = re.fullmatch(r"/(p|feed)/(\d+)(\.xml)?", path)
    if m and m[1] == "p" and int(m[2]) < corpus.size:
        return 200, "text/html; charset=utf-8", corpus.page(int(m[2]))
    if m and m[1] == "feed" and int(m[2]) < corpus.feeds:
        return 200, "application/rss+xml", corpus.feed(int(m[2]))
    return NOT_FOUND


def _tree_rss(root: int) -> int:
    """Resident bytes of a process and all its descendants, from /proc."""
    parents: dict[int, int] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
            with open(f"/proc/{entry}/statm") as f:
                pages = int(f.read().split()[1])
        except OSError:
            continue
        parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
        rss[int(entry)] = pages * os.sysconf("SC_PAGE_SIZE")
    tree, frontier = {root}, [root]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, ppid in parents.items() if ppid == parent and pid not in tree]
        tree.update(children)
        frontier.extend(children)
    return sum(rss.get(pid, 0) for pid in tree)


def measured(cmd: list[str]) -> tuple[float, int, str]:
    """Run a command; its wall time, peak resident memory of its process tree, and stdout."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = 0
    while proc.poll() is None:
        peak = max(peak, _tree_rss(proc.pid))
        time.sleep(0.05)
    out, err = proc.communicate()
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:4])}... failed ({proc.returncode}):\n{err[-2000:]}")
    return seconds, peak, out


def newsbeam(corpus: Corpus, work: Path, name: str, *beam_args: str) -> tuple[float, int]:
    config = work / f"{name}.toml"
    feeds = "".join(f'[[feeds]]\nurl = "{corpus.base}/feed/{k}.xml"\n' for k in range(corpus.feeds))
    config.write_text(f'{feeds}[fetch]\nallow_private_addresses = true\nhost_delay = 0.0\nretries = 0\n'
                      f'[output]\npath = "{work / name}"\n')
    seconds, peak, out = measured([sys.executable, "-m", "pipelines", "run", "--config", str(config), *beam_args])
    written = int(re.search(r"articles: (\d+) written", out)[1])
    if written != corpus.size:
        print(f"  note: {name} stored {written} of {corpus.size} pages", file=sys.stderr)
    return seconds, peak


def _or_dash(value: float, width: int, decimals: int) -> str:
    return f"{value:>{width}.{decimals}f}" if value == value else f"{'-':>{width}}"


def kinds() -> tuple[str, ...]:
    from pipelines.runners import prism_path

    prism = ("newsbeam prism",) if prism_path().is_file() else ()
    return ("reference", "stage work", "newsbeam", "newsbeam x2", *prism)


def run_kind(name: str, corpus: Corpus, work: Path) -> tuple[float, int]:
    if name in ("reference", "stage work"):
        script = REFERENCE if name == "reference" else STAGE_WORK
        seconds, peak, _ = measured([sys.executable, "-c", script, corpus.base, str(corpus.feeds)])
        return seconds, peak
    if name == "newsbeam":
        return newsbeam(corpus, work, "inprocess")
    if name == "newsbeam prism":
        return newsbeam(corpus, work, "prism", "--runner=PrismRunner")
    return newsbeam(corpus, work, "two", "--direct_running_mode=multi_processing", "--direct_num_workers=2")


def fixed_cost(data: Path, runs: int = 3) -> dict[str, float]:
    """The fastest of ``runs`` runs over a one-page corpus, for newsbeam (in process, and on Prism when it is
    installed) and the reference."""
    corpus = Corpus(data, 1)
    server, corpus.base = serve(partial(answer, corpus))
    best: dict[str, float] = {}
    try:
        for _ in range(runs):
            with tempfile.TemporaryDirectory() as tmp:
                for name in ("reference", "newsbeam", *(k for k in kinds() if k == "newsbeam prism")):
                    seconds, _ = run_kind(name, corpus, Path(tmp))
                    best[name] = min(seconds, best.get(name, seconds))
    finally:
        server.shutdown()
    return best


def goals(results: dict[int, dict[str, tuple[float, int]]], fixed: dict[str, float]) -> list[tuple[str, str, bool]]:
    """Issue 11's goals: (goal, the figures measured, met?)."""
    def ratio(size: int, name: str) -> float:
        return results[size]["reference"][0] / results[size][name][0]

    sizes = sorted(results)
    at_scale = [n for n in sizes if n >= 1000]
    rows = []
    if at_scale:
        rows.append(("pages/s >= 0.9x the plain loop, N >= 1,000",
                     ", ".join(f"{ratio(n, 'newsbeam'):.2f} at {n:,} (stage work alone {ratio(n, 'stage work'):.2f})"
                               for n in at_scale),
                     all(ratio(n, "newsbeam") >= 0.9 for n in at_scale)))
    rows.append(("fixed cost of a 1-page run <= 2 s",
                 f"{fixed['newsbeam']:.2f} s (plain loop {fixed['reference']:.2f} s)", fixed["newsbeam"] <= 2.0))
    speedups = {n: results[n]["newsbeam"][0] / results[n]["newsbeam x2"][0] for n in sizes}
    bounds = {n: results[n]["newsbeam"][0] / (fixed["newsbeam"] + (results[n]["newsbeam"][0] - fixed["newsbeam"]) / 2)
              for n in sizes}
    rows.append(("2 workers >= 1.7x one, at every N",
                 ", ".join(f"{speedups[n]:.2f} at {n:,} (bound {bounds[n]:.2f})" for n in sizes),
                 all(v >= 1.7 for v in speedups.values())))
    if len(sizes) > 1:
        def growth(a: int, b: int) -> float:
            return (results[b]["newsbeam"][1] - results[a]["newsbeam"][1]) / 1024 / (b - a)

        steps = ", ".join(f"{growth(a, b):.1f} from {a:,} to {b:,}" for a, b in zip(sizes, sizes[1:], strict=False))
        overall = growth(sizes[0], sizes[-1])
        rows.append(("growth per article in a run <= 10 KB, in process",
                     f"{overall:.1f} KB from N = {sizes[0]:,} to {sizes[-1]:,} ({steps})", overall <= 10))
    if 20000 in results:
        peak = results[20000]["newsbeam"][1] / 2**20
        rows.append(("N = 20,000 in process under 1.5 GB", f"{peak:,.0f} MB", peak < 1536))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="250,1000,4000,20000")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each kind per size; the fastest counts")
    parser.add_argument("--data", type=Path, default=DATA)
    args = parser.parse_args(argv)
    if not (args.data / "html").is_dir():
        print(f"skipped: {args.data} not found (the evaluation data beside the checkout)")
        return 0
    sizes = [int(s) for s in args.sizes.split(",")]
    fixed = fixed_cost(args.data)
    print(f"fixed cost, one page (fastest of 3): newsbeam {fixed['newsbeam']:.2f} s, "
          + (f"on Prism {fixed['newsbeam prism']:.2f} s, " if "newsbeam prism" in fixed else "")
          + f"plain loop {fixed['reference']:.2f} s", flush=True)
    print(f"{'N':>6} {'run':<12} {'seconds':>8} {'pages/s':>8} {'vs ref':>7} {'x2 speed-up':>11} {'peak MB':>8} "
          f"{'KB/article':>10}")
    smallest: dict[str, tuple[int, int]] = {}
    all_results: dict[int, dict[str, tuple[float, int]]] = {}
    for size in sizes:
        corpus = Corpus(args.data, size)
        server, corpus.base = serve(partial(answer, corpus))
        results: dict[str, tuple[float, int]] = {}
        for _ in range(args.repeat):
            with tempfile.TemporaryDirectory() as tmp:
                work = Path(tmp)
                for name in kinds():
                    seconds, peak = run_kind(name, corpus, work)
                    best = results.get(name)
                    results[name] = (min(seconds, best[0]) if best else seconds, max(peak, best[1]) if best else peak)
        server.shutdown()
        all_results[size] = results
        reference_rate = size / results["reference"][0]
        for name, (seconds, peak) in results.items():
            rate = size / seconds
            smallest.setdefault(name, (size, peak))
            first_size, first_peak = smallest[name]
            growth = (peak - first_peak) / 1024 / (size - first_size) if size > first_size else float("nan")
            speedup = results["newsbeam"][0] / seconds if name == "newsbeam x2" else float("nan")
            print(f"{size:>6} {name:<12} {seconds:>8.1f} {rate:>8.1f} {rate / reference_rate:>7.2f} "
                  f"{_or_dash(speedup, 11, 2)} {peak / 2**20:>8.0f} {_or_dash(growth, 10, 1)}", flush=True)
    print("\ngoals (issue 11):")
    for goal, measured_, met in goals(all_results, fixed):
        print(f"  [{'met' if met else 'NOT met':>7}] {goal}: {measured_}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
