"""Article/Story/Reject -> Parquet datasets, and the story index snapshot.

Datasets live at ``<output>/<name>/ingest_date=YYYY-MM-DD/<run_id>-SSSSS-of-NNNNN.parquet``: Hive
partitions by the run's start date, zstd, with the explicit schemas of ``schemas``. Files are written
through Beam's filesystems, so the output may be on any filesystem Beam supports: each file is written
whole under ``<output>/_tmp/<run_id>/`` and renamed into its partition when the write commits, so a reader
of the datasets never sees a partial file, and what a killed run leaves in ``_tmp/`` (a path every dataset
reader skips) the next run removes. A run with no rows for a dataset writes no file to it, except the first
run, which writes one (possibly empty) file per dataset, so a reader always finds the schema and a stream
polling every few minutes does not fill the partitions with empty files.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filebasedsink import FileBasedSink
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from pipelines import metrics, state
from pipelines.failures import REJECTS, Guarded
from pipelines.records import Article, Reject, Run, Story
from schemas import DATASETS, PARTITION_COLUMN


def to_row(record: Article | Story | Reject, run: Run) -> dict[str, Any]:
    row = dataclasses.asdict(record)
    for key, value in row.items():
        if isinstance(value, tuple):
            row[key] = list(value)
    row["run_id"] = run.run_id
    return row


def checked_row(record: Article | Story | Reject, run: Run, schema: pa.Schema) -> dict[str, Any]:
    """The record's row, converted once on its own so that a value the schema cannot hold fails this
    record (a reject) instead of the file it would share with others."""
    row = to_row(record, run)
    pa.RecordBatch.from_pylist([row], schema=schema)
    return row


def last_resort_row(reject: Reject, run: Run) -> dict[str, Any]:
    """The row of a reject about a reject row that could not be written: ASCII text, which always converts."""
    ascii_ = lambda text: str(text).encode("ascii", "backslashreplace").decode()  # noqa: E731
    return {"url": ascii_(reject.url), "feed_url": None if reject.feed_url is None else ascii_(reject.feed_url),
            "stage": reject.stage, "reason": reject.reason, "detail": ascii_(reject.detail), "run_id": run.run_id,
            "at": reject.at}


SHARDS = "-SSSSS-of-NNNNN"


def partition_dir(output: str, name: str, day: str) -> str:
    return f"{output.rstrip('/')}/{name}/{PARTITION_COLUMN}={day}"


def dataset_files(output: str, name: str) -> str:
    """A file pattern matching every file of a dataset, in all partitions."""
    return f"{output.rstrip('/')}/{name}/{PARTITION_COLUMN}=*/*.parquet"


def has_files(output: str, name: str) -> bool:
    """Whether a dataset has a file yet: a listing that stops at the first one (an object store's first page)."""
    return bool(FileSystems.match([dataset_files(output, name)], limits=[1])[0].metadata_list)


def dataset_prefix(output: str, name: str, run: Run) -> str:
    return f"{partition_dir(output, name, run.ingest_date)}/{run.run_id}"


def temp_dir(output: str, run_id: str | None = None) -> str:
    """Where runs write files before they commit (``_tmp/<run_id>``), outside every dataset."""
    base = f"{output.rstrip('/')}/_tmp"
    return f"{base}/{run_id}" if run_id else base


def discard_uncommitted(output: str) -> int:
    """Remove the files runs left in ``_tmp/`` (call it only while holding the output's lock: then no run is
    writing), and their run directories where the filesystem has directories; returns the files removed."""
    base = temp_dir(output)
    files = [m.path for m in FileSystems.match([f"{base}/**"])[0].metadata_list]
    if files:
        FileSystems.delete(files)
    runs = {f"{base}/{path[len(base) + 1:].split('/', 1)[0]}" for path in files}
    leftover = [run for run in sorted(runs) if FileSystems.exists(run)]
    if leftover:
        FileSystems.delete(leftover)
    return len(files)


ROWS_PER_BATCH = 1000


@dataclass
class _OpenFile:
    handle: Any
    writer: pq.ParquetWriter
    schema: pa.Schema
    rows: list[dict[str, Any]] = field(default_factory=list)

    def flush(self) -> None:
        if self.rows:
            self.writer.write_batch(pa.RecordBatch.from_pylist(self.rows, schema=self.schema))
            self.rows = []


class ParquetFiles(FileBasedSink):
    """The Parquet files of one dataset for one run: rows in, zstd files out, written in ``temp`` first."""

    def __init__(self, prefix: str, schema: pa.Schema, temp: str, skip_if_empty: bool = False):
        super().__init__(prefix, coder=None, file_name_suffix=".parquet", shard_name_template=SHARDS,
                         mime_type="application/x-parquet", compression_type=CompressionTypes.UNCOMPRESSED,
                         skip_if_empty=skip_if_empty)
        self._schema, self._temp = schema, temp

    def initialize_write(self) -> str:
        partition = FileSystems.split(self.file_path_prefix.get())[0]
        for directory in (self._temp, partition):  # a local rename needs the partition to exist
            if not FileSystems.exists(directory):
                FileSystems.mkdirs(directory)
        return self._temp

    def finalize_write(self, init_result, writer_results, pre_finalize_results):
        writer_results = list(writer_results)
        if not writer_results:  # nothing to write and skip_if_empty: Beam would warn that it found no shards
            return []
        return super().finalize_write(init_result, writer_results, pre_finalize_results)

    def open(self, temp_path: str) -> _OpenFile:
        handle = super().open(temp_path)
        return _OpenFile(handle, pq.ParquetWriter(handle, self._schema, compression="zstd"), self._schema)

    def write_record(self, file_handle: _OpenFile, value: dict[str, Any]) -> None:
        file_handle.rows.append(value)
        if len(file_handle.rows) >= ROWS_PER_BATCH:
            file_handle.flush()

    def close(self, file_handle: _OpenFile) -> None:
        file_handle.flush()
        file_handle.writer.close()
        file_handle.handle.close()


def run_of(path: str) -> str:
    """The run id in a dataset file's name, ``<run_id>-SSSSS-of-NNNNN.parquet``."""
    return path.rsplit("/", 1)[-1].rsplit("-", SHARDS.count("-"))[0]


def count_row(row: dict[str, Any], name: str) -> dict[str, Any]:
    """Counts a row about to be written: the run summary's articles and rejects come from here."""
    if name == "articles":
        metrics.inc("articles_written")
    elif name == "rejects":
        metrics.inc("rejects_written")
        metrics.inc(f"rejected_{row['reason']}")
        if row["feed_url"] is not None:
            metrics.inc("entries_rejected")
        elif row["stage"] == "feed":
            metrics.inc("feeds_rejected")
    return row


class WriteDataset(beam.PTransform):
    """Records -> one Parquet dataset: ``files`` (the written file names) and ``rejects`` (records that
    could not be written, stage ``write``).

    In ``rejects/`` itself, a reject whose row cannot be written becomes an ``internal_error`` reject in
    plain ASCII, written there too, so no failure is lost.
    """

    def __init__(self, name: str, output: str, run: Run):
        super().__init__()
        self._name, self._output, self._run = name, output, run

    def expand(self, records):
        schema: pa.Schema = DATASETS[self._name]
        rows = records | "ToRow" >> Guarded(beam.Map(checked_row, self._run, schema), "write")
        good, unwritable = rows["main"], rows[REJECTS]
        if self._name == "rejects":
            last_resort = unwritable | "LastResort" >> beam.Map(last_resort_row, self._run)
            good = (good, last_resort) | "AllRows" >> beam.Flatten()
            unwritable = records.pipeline | "NothingUnwritten" >> beam.Create([])
        files = (
            good
            | "Count" >> beam.Map(count_row, self._name)
            | "Parquet" >> beam.io.Write(ParquetFiles(
                dataset_prefix(self._output, self._name, self._run), schema,
                f"{temp_dir(self._output, self._run.run_id)}/{self._name}",
                skip_if_empty=has_files(self._output, self._name)))
        )
        return {"files": files, REJECTS: unwritable}


class CommitSnapshot(beam.PTransform):
    """Commits written state snapshots (their file names under ``state_dir``, see ``pipelines.state``), only
    after ``after`` (the article files) is written.

    Committing after the articles means a failed write never leaves state that claims articles the dataset
    does not hold (a story index naming them, feed validators that would skip their entries).
    """

    def __init__(self, state_dir: str, after):
        super().__init__()
        self._state_dir, self._after = state_dir, after

    def expand(self, names):
        state_dir = self._state_dir
        return names | "Commit" >> beam.Map(lambda name, _written: state.commit(state_dir, name),
                                            beam.pvalue.AsList(self._after))
