"""Compaction: old partitions become one file each, every row exactly once for readers at every moment."""

import shutil
import threading
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from pipelines.cli import LOCKED, main, run_batch
from pipelines.compact import STAGING, CannotCompact, compact, old_partitions
from pipelines.config import OutputConfig, load_config
from pipelines.datasets import check_datasets
from pipelines.lock import OutputLock
from pipelines.records import Run
from schemas import DATASETS, SCHEMA_VERSION
from tests.conftest import FIXTURES_CONFIG

NOW = datetime.now(UTC)


def all_rows(out, name: str) -> list[tuple]:
    """Every row of a dataset, as pyarrow's dataset reader and a DuckDB glob see it (they must agree)."""
    arrow = ds.dataset(str(out / name), format="parquet", partitioning="hive").to_table()
    arrow_rows = sorted(tuple(str(v) for v in r.values()) for r in arrow.to_pylist())
    duck = duckdb.sql(f"SELECT count(*) FROM read_parquet('{out / name}/*/*.parquet', hive_partitioning = true)")
    assert duck.fetchall()[0][0] == len(arrow_rows)
    return arrow_rows


def files(out, name: str) -> dict[str, int]:
    return {p.name: len(list(p.glob("*.parquet"))) for p in sorted((out / name).glob("ingest_date=*"))}


def test_runs_and_compactions_interleaved(tmp_path, capsys):
    config = load_config(FIXTURES_CONFIG)
    out = tmp_path / "out"
    config = replace(config, output=OutputConfig(path=str(out)))
    old = (NOW - timedelta(days=10)).replace(hour=9, minute=0)  # the three runs' hours stay on that day
    for k, feeds in enumerate((config.feeds[:3], config.feeds[3:5], config.feeds[5:])):  # three runs, one day
        when = old + timedelta(hours=k)
        run_batch(replace(config, feeds=feeds), [], Run(f"{when:%Y%m%dT%H%M%SZ}-old{k:03d}", when))
    run_batch(config, [], Run(f"{NOW:%Y%m%dT%H%M%SZ}-recent", NOW))  # within the window: left alone
    old_day, new_day = f"ingest_date={old:%Y-%m-%d}", f"ingest_date={NOW:%Y-%m-%d}"
    assert files(out, "articles")[old_day] == 3
    before = {name: all_rows(out, name) for name in DATASETS}
    recent = sorted(p.name for p in (out / "articles" / new_day).glob("*.parquet"))

    assert main(["compact", "--config", str(FIXTURES_CONFIG), "--output", str(out)]) == 0
    assert "articles 3 -> 1" in capsys.readouterr().out
    for name in DATASETS:
        assert all_rows(out, name) == before[name]  # every row exactly once
        assert files(out, name).get(old_day, 0) <= 1
    assert sorted(p.name for p in (out / "articles" / new_day).glob("*.parquet")) == recent
    compacted = next((out / "articles" / old_day).glob("*.parquet"))
    assert compacted.name.startswith("compacted-")
    assert pq.read_schema(compacted).metadata == DATASETS["articles"].metadata
    # the old files wait in the staging directory, outside every dataset (never read), until the next
    # compaction clears it
    assert [p.name for p in (out / STAGING / "articles").iterdir()] == [old_day]

    shutil.rmtree(out / "_state" / "feeds")  # every entry is seen again: all are recognised as stored
    summary = run_batch(config, [])
    assert summary["articles_written"] == 0 and summary["reconciled"]
    assert summary["entries"]["already_stored"] == summary["entries"]["seen"] > 0
    assert main(["compact", "--config", str(FIXTURES_CONFIG), "--output", str(out)]) == 0
    assert all_rows(out, "articles") == before["articles"]
    assert not (out / STAGING / "articles").exists()


def full_row(**values) -> dict:
    """An articles row with every column set: the given values, else a value of the column's type."""
    def filler(t: pa.DataType):
        if pa.types.is_timestamp(t):
            return NOW
        if pa.types.is_integer(t):
            return 0
        return [] if pa.types.is_list(t) else "x"
    return {f.name: values.get(f.name, filler(f.type)) for f in DATASETS["articles"]}


def write_partitions(out, days: int, files_per_day: int, rows_per_file: int) -> int:
    n = 0
    for d in range(days):
        folder = out / "articles" / f"ingest_date={(NOW - timedelta(days=30 + d)):%Y-%m-%d}"
        folder.mkdir(parents=True)
        for f in range(files_per_day):
            rows = [full_row(article_id=f"{d}-{f}-{i}", run_id=f"r{f:03d}") for i in range(rows_per_file)]
            pq.write_table(pa.Table.from_pylist(rows, schema=DATASETS["articles"]),
                           folder / f"r{f:03d}-00000-of-00001.parquet")
            n += rows_per_file
    return n


def test_readers_see_each_row_once_while_partitions_are_exchanged(tmp_path):
    out = tmp_path / "out"
    total = write_partitions(out, days=12, files_per_day=15, rows_per_file=20)
    counts, errors, done = [], [], threading.Event()

    def read_repeatedly():
        while not done.is_set():
            try:
                counts.append(ds.dataset(str(out / "articles"), format="parquet", partitioning="hive")
                              .to_table(columns=["article_id"]).num_rows)
            except (FileNotFoundError, OSError) as e:  # listed before an exchange, opened after: retry
                errors.append(e)

    reader = threading.Thread(target=read_repeatedly)
    reader.start()
    try:
        result = compact(str(out), 3.0, NOW, "20261130T000000Z-compac")
    finally:
        done.set()
        reader.join()
    assert result.partitions == 12 and result.files_before == 180 and result.rows == total
    assert counts and set(counts) == {total}  # never a row twice, never one missing
    assert all(n == 1 for n in files(out, "articles").values())


def test_old_partitions_are_those_before_the_window(tmp_path):
    out = tmp_path
    for day, n in (("2026-01-01", 2), ("2026-01-02", 1), ("2026-01-10", 3), ("not-a-date", 2)):
        folder = out / "articles" / f"ingest_date={day}"
        folder.mkdir(parents=True)
        for k in range(n):
            (folder / f"r{k}.parquet").write_bytes(b"")
    found = old_partitions(str(out), "articles", date(2026, 1, 5))
    assert [(p.name, [f.name for f in fs]) for p, fs in found] == [
        ("ingest_date=2026-01-01", ["r0.parquet", "r1.parquet"]), ("ingest_date=2026-01-02", ["r0.parquet"])]


def test_what_a_killed_compaction_left_is_cleared_and_never_read(tmp_path):
    out = tmp_path
    write_partitions(out, days=1, files_per_day=2, rows_per_file=3)
    leftover = out / STAGING / "articles" / "ingest_date=2020-01-01"
    leftover.mkdir(parents=True)
    pq.write_table(pa.table({"article_id": ["ghost"]}), leftover / "compacted-x.parquet")
    for glob in ("*/*.parquet", "**/*.parquet"):  # no reader's glob of the dataset, recursive or not, reaches it
        count = f"SELECT count(*) FROM read_parquet('{out / 'articles'}/{glob}')"
        assert duckdb.sql(count).fetchall()[0][0] == 6
    compact(str(out), 3.0, NOW, "20261130T000000Z-compac")
    assert not leftover.exists()


def test_what_older_versions_left_inside_a_dataset_is_removed_before_a_run_or_compaction(tmp_path):
    """Versions before 2.0 kept compaction's replaced files in ``<dataset>/_compacting/`` and wrote temporary
    files in ``beam-temp-*`` directories inside partitions: recursive globs (DuckDB's ``**``, Polars) read them."""
    out = tmp_path / "out"
    write_partitions(out, days=1, files_per_day=2, rows_per_file=3)
    partition = next((out / "articles").glob("ingest_date=*"))
    (out / "articles" / STAGING / partition.name).mkdir(parents=True)
    shutil.copy(next(partition.glob("*.parquet")), out / "articles" / STAGING / partition.name / "old.parquet")
    (partition / "beam-temp-x-123").mkdir()
    shutil.copy(next(partition.glob("*.parquet")), partition / "beam-temp-x-123" / "part.parquet")
    count = f"SELECT count(*) FROM read_parquet('{out / 'articles'}/**/*.parquet')"
    assert duckdb.sql(count).fetchall()[0][0] == 12  # rows twice
    checked = check_datasets(str(out), "20261130T000000Z-check1", forget_feeds=lambda: None)
    assert checked.leftovers_removed == 2 and duckdb.sql(count).fetchall()[0][0] == 6
    assert sorted(p.name for p in (out / "articles").iterdir()) == [partition.name]


def test_compaction_refuses_object_stores_and_waits_for_the_lock(tmp_path, capsys):
    with pytest.raises(CannotCompact, match="local filesystem"):
        compact("gs://bucket/news", 3.0, NOW, "run")
    with OutputLock(str(tmp_path), "20261130T000000Z-holder"):
        assert main(["compact", "--config", str(FIXTURES_CONFIG), "--output", str(tmp_path)]) == LOCKED
    assert "holder" in capsys.readouterr().err


def test_a_stream_compacts_old_partitions_after_its_first_poll_of_the_day(tmp_path, capsys):
    out = tmp_path / "out"
    total = write_partitions(out, days=2, files_per_day=3, rows_per_file=2)
    assert main(["stream", "--config", str(FIXTURES_CONFIG), "--output", str(out), "--polls", "1"]) == 0
    assert "compacted 2 partitions older than 3 days: 6 files -> 2" in capsys.readouterr().out
    old = {day: n for day, n in files(out, "articles").items() if day != f"ingest_date={NOW:%Y-%m-%d}"}
    assert list(old.values()) == [1, 1]
    stored = ds.dataset(str(out / "articles"), format="parquet", partitioning="hive").to_table()
    assert stored.num_rows == total + 26  # the synthetic history once, and the fixtures the poll stored


def test_a_partition_with_a_column_this_version_does_not_know_is_left_as_it_is(tmp_path, capsys):
    out = tmp_path
    write_partitions(out, days=2, files_per_day=2, rows_per_file=2)
    compacted, newer = sorted((out / "articles").glob("ingest_date=*"))  # compacted first, then the newer one
    table = pa.Table.from_pylist([full_row(article_id="n1")], schema=DATASETS["articles"])
    pq.write_table(table.append_column("sentiment", pa.array([0.5])), newer / "r999-00000-of-00001.parquet")
    result = compact(str(out), 3.0, NOW, "20261130T000000Z-compac")
    assert result.partitions == 1 and result.skipped == [f"articles/{newer.name}: columns sentiment are not in "
                                                         f"schema version {SCHEMA_VERSION}"]
    assert len(list(newer.glob("*.parquet"))) == 3 and not (out / STAGING / "articles" / newer.name).exists()
    # the replaced files of the partition compacted before are kept, for readers still listing it
    assert len(list((out / STAGING / "articles" / compacted.name).glob("*.parquet"))) == 2
    # a file of a newer schema version (the column's version names itself) stops compaction and runs alike
    newer_schema = table.schema.with_metadata({**table.schema.metadata, b"newsbeam.schema_version": b"9.1"})
    pq.write_table(table.cast(newer_schema), newer / "r998-00000-of-00001.parquet")
    assert main(["compact", "--config", str(FIXTURES_CONFIG), "--output", str(out)]) == 2
    assert main(["run", "--config", str(FIXTURES_CONFIG), "--output", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all("schema version 9.1, written by a newer newsbeam" in line for line in err)


def test_a_reader_that_opened_a_partition_before_its_exchange_still_finds_its_old_files(tmp_path):
    """The old files outlive the compaction that replaced them, so such a reader never sees the partition
    empty (it fails on opening them by path instead, and retries)."""
    import os

    write_partitions(tmp_path, days=1, files_per_day=3, rows_per_file=2)
    partition = next((tmp_path / "articles").glob("ingest_date=*"))
    opened = os.open(partition, os.O_RDONLY)  # as a reader listing the partition has it open
    try:
        compact(str(tmp_path), 3.0, NOW, "20261130T000000Z-compac")
        assert sorted(os.listdir(opened)) == [f"r{f:03d}-00000-of-00001.parquet" for f in range(3)]
        assert [p.name for p in partition.iterdir()] == ["compacted-20261130T000000Z-compac.parquet"]
    finally:
        os.close(opened)


def test_the_report_counts_in_words_and_says_what_it_left_alone():
    from pipelines.cli import compact_report
    from pipelines.compact import Compacted
    from pipelines.datasets import Checked

    one = Compacted(partitions=1, rows=1, by_dataset={"articles": (2, 1)}, single=2)
    report = compact_report("r1", 3.0, Checked(upgraded={"articles": 1}), one)
    assert report.startswith("newsbeam compact r1: 1 partition older than 3 days compacted, 1 row;")
    assert "2 older partitions already one file each, left as they are" in report
    assert "1 file of older schema versions rewritten" in report
    none = compact_report("r2", 3.0, Checked(), Compacted(single=1))
    assert "0 partitions older than 3 days compacted" in none and "1 older partition already one file" in none
