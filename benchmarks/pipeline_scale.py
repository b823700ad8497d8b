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
- ``newsbeam x2``: the same with ``--direct_running_mode=multi_processing --direct_num_workers=2``.

Printed per N: seconds, pages/s, the ratio to the reference's pages/s, the two-worker speed-up over the
in-process run, and the peak resident memory of each process tree (sampled every 50 ms from /proc), with
the growth per article between the smallest and each larger N.
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


KINDS = ("reference", "newsbeam", "newsbeam x2")


def run_kind(name: str, corpus: Corpus, work: Path) -> tuple[float, int]:
    if name == "reference":
        seconds, peak, _ = measured([sys.executable, "-c", REFERENCE, corpus.base, str(corpus.feeds)])
        return seconds, peak
    if name == "newsbeam":
        return newsbeam(corpus, work, "inprocess")
    return newsbeam(corpus, work, "two", "--direct_running_mode=multi_processing", "--direct_num_workers=2")


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
    print(f"{'N':>6} {'run':<12} {'seconds':>8} {'pages/s':>8} {'vs ref':>7} {'x2 speed-up':>11} {'peak MB':>8} "
          f"{'KB/article':>10}")
    smallest: dict[str, tuple[int, int]] = {}
    for size in sizes:
        corpus = Corpus(args.data, size)
        server, corpus.base = serve(partial(answer, corpus))
        results: dict[str, tuple[float, int]] = {}
        for _ in range(args.repeat):
            with tempfile.TemporaryDirectory() as tmp:
                work = Path(tmp)
                for name in KINDS:
                    seconds, peak = run_kind(name, corpus, work)
                    best = results.get(name)
                    results[name] = (min(seconds, best[0]) if best else seconds, max(peak, best[1]) if best else peak)
        server.shutdown()
        reference_rate = size / results["reference"][0]
        for name, (seconds, peak) in results.items():
            rate = size / seconds
            smallest.setdefault(name, (size, peak))
            first_size, first_peak = smallest[name]
            growth = (peak - first_peak) / 1024 / (size - first_size) if size > first_size else float("nan")
            speedup = results["newsbeam"][0] / seconds if name == "newsbeam x2" else float("nan")
            print(f"{size:>6} {name:<12} {seconds:>8.1f} {rate:>8.1f} {rate / reference_rate:>7.2f} "
                  f"{_or_dash(speedup, 11, 2)} {peak / 2**20:>8.0f} {_or_dash(growth, 10, 1)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
