from datetime import UTC, datetime

import apache_beam as beam
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from apache_beam.testing.test_pipeline import TestPipeline

from pipelines.records import Reject, Run, Story
from pipelines.sinks import ParquetFiles, WriteDataset, has_files, pack, to_row
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
    assert table.schema.field("rejected_at").type == REJECTS.field("rejected_at").type
    assert not (tmp_path / "stories").exists()  # no rows, no file (and no empty partition)


def test_a_run_with_no_rows_writes_no_file(tmp_path):
    out = str(tmp_path)
    later = Run(run_id="20250615T000000Z-later1", started_at=datetime(2025, 6, 15, tzinfo=UTC))
    for run in (RUN, later):
        with TestPipeline() as p:
            _ = p | beam.Create([]) | WriteDataset("stories", out, run)
    assert not list(tmp_path.rglob("*.parquet"))
    story = Story("s1", "t", "a1", 1, ("src",), T, T)
    with TestPipeline() as p:
        _ = p | beam.Create([story]) | WriteDataset("stories", out, later)
    table = ds.dataset(str(tmp_path / "stories"), format="parquet", partitioning="hive").to_table()
    assert table.column("story_id").to_pylist() == ["s1"] and len(list((tmp_path / "stories").rglob("*.parquet"))) == 1


def test_bundles_files_are_packed_into_as_few_files_as_the_size_bound_allows(tmp_path):
    """However many bundles (workers) wrote a run's rows, it adds one file per ``TARGET_BYTES``."""
    out = str(tmp_path)
    rejects = [Reject(f"https://a.example/{i}", "feed", "fetch", "http_4xx", "HTTP 404", T) for i in range(40)]
    with TestPipeline() as p:
        _ = (p | beam.Create(rejects, reshuffle=False)
             | beam.Reshuffle(num_buckets=8)  # rows spread over bundles, as over workers
             | WriteDataset("rejects", out, RUN))
    (only,) = list((tmp_path / "rejects").rglob("*.parquet"))
    assert only.name == f"{RUN.run_id}-00000-of-00001.parquet" and pq.read_table(only).num_rows == 40
    assert not list((tmp_path / "_tmp").rglob("*.parquet"))

    sink = ParquetFiles(f"{tmp_path}/stories/ingest_date=2025-06-14/{RUN.run_id}", STORIES, f"{tmp_path}/_tmp/w")
    init = sink.initialize_write()
    shards = []
    for k in range(3):  # three bundles' files
        writer = sink.open_writer(init, f"bundle{k}")
        writer.write(to_row(Story(f"s{k}", "t", "a1", 1, ("src",), T, T), RUN))
        shards.append(writer.close())
    finals = list(sink.finalize_write(init, shards, None))
    assert [f.rsplit("/", 1)[-1] for f in finals] == [f"{RUN.run_id}-00000-of-00001.parquet"]
    assert pq.read_table(finals[0]).column("story_id").to_pylist() == ["s0", "s1", "s2"]
    assert list(sink.finalize_write(init, shards, None)) == finals  # a retried commit finds it done
    assert pack([("a", 60), ("b", 50), ("c", 200), ("d", 10)], target=100) == [["a"], ["b"], ["c"], ["d"]]
    assert pack([("a", 30), ("b", 50), ("c", 30), ("d", 10)], target=100) == [["a", "b"], ["c", "d"]]


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
