from datetime import UTC, datetime

import apache_beam as beam
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from apache_beam.testing.test_pipeline import TestPipeline

from pipelines.records import Reject, Run, Story
from pipelines.sinks import WriteDataset, has_files, to_row
from schemas import DATASETS, REJECTS, SCHEMA_VERSION, STORIES

RUN = Run("20250614T000000Z-sink01", datetime(2025, 6, 14, 3, tzinfo=UTC))
T = datetime(2025, 6, 13, 12, tzinfo=UTC)


def test_every_schema_field_is_documented_and_versioned():
    for name, schema in DATASETS.items():
        assert schema.metadata[b"newsbeam.schema_version"].decode() == SCHEMA_VERSION
        assert schema.metadata[b"newsbeam.dataset"].decode() == name
        for f in schema:
            assert f.metadata and f.metadata[b"doc"], f"{name}.{f.name} has no doc"


def test_rows_match_schema_columns():
    story = Story("s1", "Title", "a1", 2, ("A", "B"), T, T)
    row = to_row(story, RUN)
    assert set(row) == set(STORIES.names) and row["sources"] == ["A", "B"]
    reject = Reject("u", None, "feed", "bad_feed", "d", T)
    assert set(to_row(reject, RUN)) == set(REJECTS.names)


def test_write_dataset_hive_partitioned_zstd_with_explicit_schema(tmp_path):
    out = str(tmp_path)
    rejects = [Reject(f"https://a.example/{i}", "feed", "fetch", "http_4xx", "HTTP 404", T) for i in range(3)]
    with TestPipeline() as p:
        _ = p | beam.Create(rejects) | WriteDataset("rejects", out, RUN)
        _ = p | "NoStories" >> beam.Create([]) | "WriteStories" >> WriteDataset("stories", out, RUN)
    files = list((tmp_path / "rejects" / "ingest_date=2025-06-14").glob("*.parquet"))
    assert files and all(f.name.startswith(RUN.run_id) for f in files)
    meta = pq.ParquetFile(files[0]).metadata
    assert meta.row_group(0).column(0).compression == "ZSTD"
    table = ds.dataset(str(tmp_path / "rejects"), format="parquet", partitioning="hive").to_table()
    assert table.num_rows == 3 and set(table.column("run_id").to_pylist()) == {RUN.run_id}
    assert table.schema.field("at").type == REJECTS.field("at").type
    # an empty run still leaves a readable file carrying the schema
    empty = ds.dataset(str(tmp_path / "stories"), format="parquet", partitioning="hive")
    assert empty.to_table().num_rows == 0 and empty.schema.field("sources").type == STORIES.field("sources").type


def test_a_run_with_no_rows_writes_no_file_once_the_dataset_has_one(tmp_path):
    out = str(tmp_path)
    later = Run(run_id="20250615T000000Z-later1", started_at=datetime(2025, 6, 15, tzinfo=UTC))
    for run in (RUN, later):  # the first run's empty file carries the schema; the second adds nothing
        with TestPipeline() as p:
            _ = p | beam.Create([]) | WriteDataset("stories", out, run)
    assert [f.name for f in (tmp_path / "stories").rglob("*.parquet")] == [f"{RUN.run_id}-00000-of-00001.parquet"]
    story = Story("s1", "t", "a1", 1, ("src",), T, T)
    with TestPipeline() as p:
        _ = p | beam.Create([story]) | WriteDataset("stories", out, later)
    table = ds.dataset(str(tmp_path / "stories"), format="parquet", partitioning="hive").to_table()
    assert table.column("story_id").to_pylist() == ["s1"] and len(list((tmp_path / "stories").rglob("*.parquet"))) == 2


def test_has_files_finds_a_dataset_file_in_any_partition_and_nothing_else(tmp_path):
    out = str(tmp_path)
    assert not has_files(out, "articles")  # no output yet
    (tmp_path / "articles" / "ingest_date=2025-06-14").mkdir(parents=True)
    (tmp_path / "articles" / "ingest_date=2025-06-14" / "notes.txt").write_text("x")
    (tmp_path / "articles" / "stray.parquet").write_bytes(b"")  # outside every partition
    (tmp_path / "stories" / "ingest_date=2025-06-14").mkdir(parents=True)
    (tmp_path / "stories" / "ingest_date=2025-06-14" / "r-00000-of-00001.parquet").write_bytes(b"")
    assert not has_files(out, "articles") and has_files(out, "stories")
    for day in ("2025-06-13", "2025-06-15"):
        (tmp_path / "articles" / f"ingest_date={day}").mkdir()
        (tmp_path / "articles" / f"ingest_date={day}" / "r-00000-of-00001.parquet").write_bytes(b"")
    assert has_files(out, "articles")
