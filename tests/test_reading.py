"""The README's "Reading the data" examples, run as written against an output that holds several runs, a
compaction and files written by older schema versions: each reader counts every row once, with every column."""

import re
import shutil
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

from pipelines.cli import main, run_batch
from pipelines.config import OutputConfig, load_config
from pipelines.records import Run
from schemas import DATASETS, PARTITION_COLUMN
from tests.conftest import FIXTURES_CONFIG, ROOT

README = (ROOT / "README.md").read_text()
SECTION = README.split("## Reading the data", 1)[1].split("\n## ", 1)[0]
NOW = datetime.now(UTC)

# What newsbeam 1.0 (articles, stories) and 1.2 (rejects) wrote: the columns added since missing, and
# rejects.rejected_at still named "at".
OLDER = {"articles": ("1.0", ["description", "image_url", "tags", "claimed_published_at"], {}),
         "stories": ("1.0", [], {}),
         "rejects": ("1.2", [], {"rejected_at": "at"})}


def as_older_version(path: Path, name: str) -> None:
    version, dropped, renamed = OLDER[name]
    table = pq.read_table(path).drop_columns(dropped)
    table = table.rename_columns([renamed.get(c, c) for c in table.column_names])
    table = table.replace_schema_metadata({b"newsbeam.schema_version": version.encode(),
                                           b"newsbeam.dataset": name.encode()})
    pq.write_table(table, path, compression="zstd")


@pytest.fixture(scope="module")
def history(tmp_path_factory) -> tuple[Path, dict[str, int]]:
    """Three runs ten days ago (one of them as an older newsbeam wrote it), a run now, a compaction of the old
    partitions; the rows each dataset holds, counted file by file."""
    out = tmp_path_factory.mktemp("reading") / "out"
    config = replace(load_config(FIXTURES_CONFIG), output=OutputConfig(path=str(out)))
    old = (NOW - timedelta(days=10)).replace(hour=9, minute=0)
    for k, feeds in enumerate((config.feeds[:3], config.feeds[3:5], config.feeds[5:])):
        when = old + timedelta(hours=k)
        run_batch(replace(config, feeds=feeds), [], Run(f"{when:%Y%m%dT%H%M%SZ}-old{k:03d}", when))
    older = {name: next(out.glob(f"{name}/*/*-old00{0 if name == 'rejects' else 1}-*.parquet")) for name in OLDER}
    for name, path in older.items():
        as_older_version(path, name)
    shutil.rmtree(out / "_state" / "feeds")  # every entry is seen again, and recognised as stored
    summary = run_batch(config, [], Run(f"{NOW:%Y%m%dT%H%M%SZ}-recent", NOW))
    assert summary["datasets"]["files_upgraded"] == 3 and summary["articles_written"] == 0
    assert main(["compact", "--config", str(FIXTURES_CONFIG), "--output", str(out)]) == 0
    counts = {name: sum(pq.read_metadata(f).num_rows for f in (out / name).glob(f"{PARTITION_COLUMN}=*/*.parquet"))
              for name in DATASETS}
    # the broken feed's failure is stored again: its state went with the feed states
    assert counts["articles"] == 26 and counts["stories"] > 18 and counts["rejects"] == 3
    return out, counts


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", SECTION, flags=re.S)


def as_run_on(code: str, out: Path) -> str:
    return code.replace("out/fixtures", str(out))


def columns(name: str) -> set[str]:
    return {*DATASETS[name].names, PARTITION_COLUMN}


def test_duckdb_examples(history):
    out, counts = history
    (sql,) = blocks("sql")
    statements = [s for s in as_run_on(sql, out).split(";") if s.strip()]
    results = [duckdb.sql(s).fetchall() for s in statements]
    assert results[0] == [(counts["articles"], counts["articles"])]
    assert results[1] == [(counts["rejects"],)]
    stories = duckdb.sql(f"SELECT story_id, max(run_id) FROM read_parquet('{out}/stories/*/*.parquet') "
                         "GROUP BY story_id").fetchall()
    assert len(results[2]) == len(stories) == len({r[0] for r in results[2]})  # each story once
    # the seeds, spread over two runs: one story of five outlets, disputing the investment only
    assert [r[2:] for r in results[2][:1]] == [(5, 5, 6, 1)]
    assert "14.8" not in results[2][0][1]  # its headline is not the outlier's ("Meta invests $14.8 billion ...")
    assert {(r[1], r[2].lower(), tuple(r[3])) for r in results[3]} == {
        ("investment", "$14.8 billion", ("Bytebeat",)),
        ("investment", "$14.3 billion", ("Economy Now", "Global Markets Post", "Techwire Review", "The Daily Ledger"))}
    first = {title: (outlet, outlets) for title, outlet, _, outlets in results[4]}
    assert first[results[2][0][1]] == ("Bytebeat", 5)  # its first version by publication time
    assert len(results[5]) == 24  # the originals: two of the 26 are copies
    assert sum(r[2] for r in results[6]) == counts["rejects"]
    for name in DATASETS:  # every column, by its plain name
        names = ", ".join(sorted(columns(name)))
        query = f"SELECT {names} FROM read_parquet('{out}/{name}/**/*.parquet', hive_partitioning = true)"
        assert len(duckdb.sql(query).fetchall()) == counts[name]


def shape(frame) -> tuple[int, set[str]]:
    """(rows, column names) of a Polars, pandas, pyarrow or Spark frame."""
    if hasattr(frame, "num_rows"):
        return frame.num_rows, set(frame.column_names)
    if hasattr(frame, "rdd"):
        return frame.count(), set(frame.columns)
    return len(frame), set(frame.columns)


@pytest.mark.parametrize("reader", ["Polars", "pandas", "pyarrow", "Spark"])
def test_python_examples(history, reader):
    out, counts = history
    (code,) = [b for b in blocks("python") if b.startswith(f"# {reader}\n")]
    namespace: dict = {}
    exec(compile(as_run_on(code, out), f"README ({reader})", "exec"), namespace)
    for name in DATASETS:
        assert shape(namespace[name]) == (counts[name], columns(name)), (reader, name)
    if "current" in namespace:  # one row per story
        assert len(namespace["current"]) == len(set(namespace["stories"]["story_id"]))
    if "disputed" in namespace:  # the seeds' investment: $14.3 billion (four outlets) against $14.8 billion (one)
        assert sorted(len(o) for o in namespace["disputed"]["outlets"]) == [1, 4]
        assert set(namespace["disputed"]["subject"]) == {"investment"}
    if reader == "Spark":
        spark = namespace["spark"]
        for name in DATASETS:  # every column name is a plain identifier in Spark SQL too
            namespace[name].createOrReplaceTempView(name)
            assert spark.sql(f"SELECT {', '.join(sorted(columns(name)))} FROM {name}").count() == counts[name]
    if reader == "Polars":
        import polars as pl

        for name in DATASETS:
            frame = namespace[name]  # noqa: F841 (read by the query)
            assert pl.sql(f"SELECT {', '.join(sorted(columns(name)))} FROM frame").collect().height == counts[name]
