"""Cost of recognising stored articles as the history grows.

    python benchmarks/known_scale.py [--sizes 0,100000,300000,1000000] [--rows-per-file 1000] [--compact]

Writes a synthetic stored history of N articles (the four columns the check reads: article_id, url,
final_url, canonical_url; Parquet reads no other column) as files of ``--rows-per-file`` rows under
``articles/``, then times the fixtures job (``configs/fixtures.toml``, DirectRunner, in-process) against it.
Prints each run's time and its ratio to the empty-history run measured in the same invocation, so machine
noise largely cancels. With ``--compact``, each history is also timed after ``newsbeam compact`` has
rewritten its (old) partitions into one file each. Needs nothing outside the checkout.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parent.parent


def write_history(output: Path, size: int, rows_per_file: int) -> int:
    files = 0
    for start in range(0, size, rows_per_file):
        ids = range(start, min(size, start + rows_per_file))
        urls = [f"https://site{i % 500}.example/news/2025/{i % 12 + 1:02d}/article-number-{i}?utm_source=rss"
                for i in ids]
        canonical = [u.split("?")[0] for u in urls]
        folder = output / "articles" / f"ingest_date=2025-{files % 12 + 1:02d}-01"
        folder.mkdir(parents=True, exist_ok=True)
        columns = {"article_id": [f"{i:016x}" for i in ids], "url": urls, "final_url": canonical,
                   "canonical_url": canonical}
        pq.write_table(_full(columns, len(ids)), folder / f"20250101T000000Z-{files:06d}-00000-of-00001.parquet")
        files += 1
    return files


def _full(columns: dict[str, list], rows: int) -> pa.Table:
    """The four columns the check reads, and every other column of the schema with a placeholder value."""
    from schemas import ARTICLES

    def filler(t: pa.DataType):
        if pa.types.is_timestamp(t):
            return datetime(2025, 1, 1, tzinfo=UTC)
        if pa.types.is_integer(t):
            return 0
        return [] if pa.types.is_list(t) else ""

    arrays = [pa.array(columns[f.name], f.type) if f.name in columns else pa.array([filler(f.type)] * rows, f.type)
              for f in ARTICLES]
    return pa.Table.from_arrays(arrays, schema=ARTICLES)


def timed_run(output: Path) -> tuple[float, dict]:
    from pipelines.cli import run_batch
    from pipelines.config import load_config
    from pipelines.records import Run

    config = load_config(ROOT / "configs" / "fixtures.toml")
    config = replace(config, output=replace(config.output, path=str(output)))
    now = datetime.now(UTC)
    start = time.perf_counter()
    summary = run_batch(config, [], Run(f"{now:%Y%m%dT%H%M%SZ}-bench", now))
    return time.perf_counter() - start, summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="0,100000,300000,1000000")
    parser.add_argument("--rows-per-file", type=int, default=1000)
    parser.add_argument("--compact", action="store_true", help="time each history again after compaction")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    if sizes[0] != 0:
        sizes.insert(0, 0)
    with tempfile.TemporaryDirectory() as tmp:  # the first pipeline of a process pays Beam's one-off costs
        timed_run(Path(tmp))
    reference = None
    for size in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            files = write_history(Path(tmp), size, args.rows_per_file)
            seconds, summary = timed_run(Path(tmp))
            if reference is None:
                reference = seconds
            print(f"history {size:>9,} articles in {files:>5,} files: {seconds:5.1f}s, {seconds / reference:4.2f}x "
                  f"the empty history; {summary['articles_written']} articles written, "
                  f"reconciled={summary['reconciled']}", flush=True)
            if args.compact and size:
                from pipelines.compact import compact

                now = datetime.now(UTC)
                started = time.perf_counter()
                done = compact(tmp, 3.0, now, f"{now:%Y%m%dT%H%M%SZ}-compac")
                took = time.perf_counter() - started
                # the fixtures job again from scratch, as before: only the synthetic history stays
                for leftover in ("_state", "_runs", "stories", "rejects", f"articles/ingest_date={now:%Y-%m-%d}"):
                    shutil.rmtree(Path(tmp) / leftover, ignore_errors=True)
                seconds, summary = timed_run(Path(tmp))
                print(f"  compacted in {took:.1f}s into {done.files_after} files: {seconds:5.1f}s, "
                      f"{seconds / reference:4.2f}x the empty history; {summary['articles_written']} articles "
                      f"written", flush=True)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
