"""Article/Story/Reject -> Parquet datasets, and the story index snapshot.

Datasets live at ``<output>/<name>/ingest_date=YYYY-MM-DD/<run_id>-SSSSS-of-NNNNN.parquet``: Hive
partitions by the run's start date, zstd, with the explicit schemas of ``schemas``. Files are written
through Beam's filesystems, so the output may be on any filesystem Beam supports: each bundle's rows are
written whole under ``<output>/_tmp/<run_id>/`` and the files are moved into their partition when the write
commits, so a reader of the datasets never sees a partial file, and what a killed run leaves in ``_tmp/`` (a
path every dataset reader skips) the next run removes. When it commits, the write packs its bundles' files
into as few files as a size bound allows (``TARGET_BYTES``): how many workers wrote them does not change
how many files a run adds. A run with no rows for a dataset adds no file to it, so a stream's idle polls
add nothing.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
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
from pipelines.paths import delete, ensure_dir, literal, within
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
            "rejected_at": reject.rejected_at}


SHARDS = "-SSSSS-of-NNNNN"


def partition_dir(output: str, name: str, day: str) -> str:
    return f"{output.rstrip('/')}/{name}/{PARTITION_COLUMN}={day}"


def dataset_files(output: str, name: str) -> str:
    """A file pattern matching every file of a dataset, in all partitions."""
    return within(output, f"{name}/{PARTITION_COLUMN}=*/*.parquet")


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
    files = [m.path for m in FileSystems.match([within(base, "**")])[0].metadata_list]
    delete(files)
    runs = {f"{base}/{path[len(base) + 1:].split('/', 1)[0]}" for path in files}
    delete(run for run in sorted(runs) if FileSystems.exists(run))
    return len(files)


ROWS_PER_BATCH = 1000
TARGET_BYTES = 128 << 20  # files a run's bundles wrote are packed into files of at most about this size
_RAW = CompressionTypes.UNCOMPRESSED


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


def pack(sizes: list[tuple[str, int]], target: int = TARGET_BYTES) -> list[list[str]]:
    """Files in their order, grouped so that each group's size stays within ``target`` (a file larger than
    that is a group of its own)."""
    groups: list[list[str]] = []
    total = 0
    for path, size in sizes:
        if not groups or total + size > target:
            groups.append([])
            total = 0
        groups[-1].append(path)
        total += size
    return groups


def merge(sources: list[str], target: str, schema: pa.Schema,
          conform: Callable[[pa.Table], pa.Table] | None = None) -> None:
    """Write the row groups of ``sources``, in order, into one file of ``schema``, each passed through
    ``conform`` first when given (rows of an older schema version, see ``pipelines.datasets``)."""
    with FileSystems.create(target, compression_type=_RAW) as sink, \
            pq.ParquetWriter(sink, schema, compression="zstd") as writer:
        for source in sources:
            with FileSystems.open(source, compression_type=_RAW) as f:
                parquet = pq.ParquetFile(f)
                for k in range(parquet.num_row_groups):
                    group = parquet.read_row_group(k)
                    writer.write_table(conform(group) if conform else group)


class ParquetFiles(FileBasedSink):
    """The Parquet files of one dataset for one run: rows in, zstd files out, written in ``temp`` first.

    Each bundle with rows writes a file in ``temp``; committing packs them (``pack``, ``merge``) into the
    run's files in the partition, named ``<prefix>-SSSSS-of-NNNNN.parquet``. The packing is decided once and
    kept beside the bundles' files, so a retried commit finishes the same files."""

    def __init__(self, prefix: str, schema: pa.Schema, temp: str):
        super().__init__(prefix, coder=None, file_name_suffix=".parquet", shard_name_template=SHARDS,
                         mime_type="application/x-parquet", compression_type=_RAW, skip_if_empty=True)
        self._schema, self._temp = schema, temp

    def initialize_write(self) -> str:
        ensure_dir(self._temp)
        return self._temp

    def pre_finalize(self, init_result, writer_results):
        return None  # final names carry the run's id: there is nothing of an earlier write to clear

    def finalize_write(self, init_result, writer_results, pre_finalize_results):
        if not list(writer_results):  # no rows: no file
            return []
        plan_path = f"{init_result}/pack.json"
        if FileSystems.exists(plan_path):
            with FileSystems.open(plan_path, compression_type=_RAW) as f:
                plan = json.loads(f.read())
        else:
            found = FileSystems.match([literal(path) for path in sorted(writer_results)])
            plan = pack([(m.path, m.size_in_bytes) for result in found for m in result.metadata_list])
            with FileSystems.create(plan_path, compression_type=_RAW) as f:
                f.write(json.dumps(plan).encode())
        ensure_dir(FileSystems.split(self.file_path_prefix.get())[0])
        finals = [self._get_final_name(k, len(plan)) for k in range(len(plan))]
        for k, (group, final) in enumerate(zip(plan, finals, strict=True)):
            if FileSystems.exists(final):  # committed by an earlier attempt
                continue
            source = group[0]
            if len(group) > 1:
                source = f"{init_result}/packed-{k:05d}.parquet"
                merge(group, source, self._schema)
            FileSystems.rename([source], [final])
        return finals

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


def write_whole(output: str, name: str, run: Run, rows: list[dict[str, Any]]) -> str | None:
    """A stream poll's rows of one dataset as one file, ``<run_id>-00000-of-00001.parquet`` in the run's
    partition, written under the run's ``_tmp/`` and renamed into place, so readers see all of it or none;
    a file already there (a retried commit) is kept. No rows, no file. Returns the file."""
    if not rows:
        return None
    final = f"{dataset_prefix(output, name, run)}-00000-of-00001.parquet"
    if FileSystems.exists(final):
        return final
    staged = f"{temp_dir(output, run.run_id)}/{name}.parquet"
    ensure_dir(staged.rsplit("/", 1)[0])
    schema = DATASETS[name]
    with FileSystems.create(staged, compression_type=_RAW) as sink, \
            pq.ParquetWriter(sink, schema, compression="zstd") as writer:
        for start in range(0, len(rows), ROWS_PER_BATCH):
            writer.write_batch(pa.RecordBatch.from_pylist(rows[start:start + ROWS_PER_BATCH], schema=schema))
    ensure_dir(final.rsplit("/", 1)[0])
    FileSystems.rename([staged], [final])
    return final


def row_counts(name: str, rows: list[dict[str, Any]]) -> dict[str, int]:
    """The counts ``count_row`` makes of a dataset's rows, as a dict (a stream poll's summary)."""
    counts: dict[str, int] = {}
    for row in rows:
        for key in _counts_of(row, name):
            counts[key] = counts.get(key, 0) + 1
    return counts


def _counts_of(row: dict[str, Any], name: str) -> list[str]:
    if name == "articles":
        return ["articles_written"]
    if name != "rejects":
        return []
    found = ["rejects_written", f"rejected_{row['reason']}"]
    if row["feed_url"] is not None:
        found.append("entries_rejected")
    elif row["stage"] == "feed":
        found.append("feeds_rejected")
    return found


def run_of(path: str) -> str:
    """The run id in a dataset file's name, ``<run_id>-SSSSS-of-NNNNN.parquet``."""
    return path.rsplit("/", 1)[-1].rsplit("-", SHARDS.count("-"))[0]


def count_row(row: dict[str, Any], name: str) -> dict[str, Any]:
    """Counts a row about to be written: the run summary's articles and rejects come from here."""
    for key in _counts_of(row, name):
        metrics.inc(key)
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
                f"{temp_dir(self._output, self._run.run_id)}/{self._name}"))
        )
        return {"files": files, REJECTS: unwritable}


class CommitSnapshot(beam.PTransform):
    """Commits written state snapshots (their file names under ``state_dir``, see ``pipelines.state``), only
    after ``after`` (the files of every dataset of the run) is written.

    Committing after every write means a failed write never leaves state that claims rows the datasets do not
    hold (a story index naming articles, feed validators that would skip the entries of articles or rejects).
    """

    def __init__(self, state_dir: str, after):
        super().__init__()
        self._state_dir, self._after = state_dir, after

    def expand(self, names):
        state_dir = self._state_dir
        return names | "Commit" >> beam.Map(lambda name, _written: state.commit(state_dir, name),
                                            beam.pvalue.AsList(self._after))
