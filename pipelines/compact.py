"""Compaction: each dataset partition older than the story window becomes one file, atomically for readers.

Runs (and a stream's polls) add a file per dataset each time they store something, so a long-lived output
gathers thousands of small files, and readers and the known-check pay per file. ``compact`` rewrites every
partition whose date is more than ``window_days`` past into one file, ``compacted-<run_id>.parquet``, with
every row of its files exactly once (in file order), holding a row group at a time. Before it, every file of
an older schema version is brought to the current one (``pipelines.datasets``). Partitions within the
window are left alone: crash recovery reads their run-named files (``pipelines.stories.recover``).

Readers see either all of a partition's old files or its one new file, never both and never neither: the
new file is written into ``<output>/_compacting/<dataset>/<partition>/``, outside every dataset's tree (so
no reader's glob, recursive or not, reaches it), and that directory is exchanged with the partition in one
atomic ``renameat2(RENAME_EXCHANGE)`` call. The old files, now in ``_compacting/``, stay there until the
next compaction starts: a reader still listing the old directory finds them (deleting them at once would
show it an empty partition). A reader that listed the partition before the exchange and opens its files
after it finds them gone (an error to retry, never a wrong answer). This needs a local filesystem
that supports the exchange (Linux ext4, xfs, btrfs, tmpfs); object stores cannot rename atomically, so
compaction refuses them. Compaction holds the output's lock like a run; what a killed compaction leaves in
``_compacting/`` the next compaction removes.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import shutil
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.datasets import Unknown, conformed
from schemas import DATASETS, PARTITION_COLUMN

STAGING = "_compacting"
ROW_GROUP = 65_536
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


class CannotCompact(Exception):
    """The output's filesystem cannot exchange directories atomically."""


@dataclass
class Compacted:
    partitions: int = 0
    files_before: int = 0
    files_after: int = 0
    rows: int = 0
    by_dataset: dict[str, tuple[int, int]] = field(default_factory=dict)  # name -> (files before, after)
    single: int = 0  # old partitions that hold one file already
    skipped: list[str] = field(default_factory=list)  # partitions left alone, and why


def staging_dir(output: str, name: str) -> Path:
    return Path(output) / STAGING / name


def clear_staging(output: str) -> None:
    """Remove the files the last compaction replaced, and what a killed one left (call only while holding the
    output's lock)."""
    shutil.rmtree(Path(output) / STAGING, ignore_errors=True)


def old_partitions(output: str, name: str, before: date) -> list[tuple[Path, list[Path]]]:
    """The partitions of a dataset dated before ``before``, with their files in name order (run ids sort by
    start time)."""
    found = []
    for partition in sorted((Path(output) / name).glob(f"{PARTITION_COLUMN}=*")):
        try:
            day = date.fromisoformat(partition.name.split("=", 1)[1])
        except ValueError:
            continue
        if day < before:
            found.append((partition, sorted(partition.glob("*.parquet"))))
    return found


def write_merged(files: list[Path], name: str, target: Path) -> int:
    """Write the rows of ``files``, in order, into one file of dataset ``name``; holds about ``ROW_GROUP``
    rows at a time. Returns the rows written."""
    rows, pending = 0, []
    schema = DATASETS[name]
    with pq.ParquetWriter(target, schema, compression="zstd") as writer:
        for path in files:
            pending.append(conformed(pq.read_table(path), name))
            if sum(t.num_rows for t in pending) >= ROW_GROUP:
                writer.write_table(pa.concat_tables(pending), row_group_size=ROW_GROUP)
                rows += sum(t.num_rows for t in pending)
                pending = []
        if pending:
            writer.write_table(pa.concat_tables(pending), row_group_size=ROW_GROUP)
            rows += sum(t.num_rows for t in pending)
    return rows


def exchange(a: Path, b: Path) -> None:
    """Swap two directories in one atomic step (Linux ``renameat2`` with ``RENAME_EXCHANGE``)."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:
        raise CannotCompact("this system has no renameat2 (Linux with glibc 2.28 or newer is needed)")
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) != 0:
        code = ctypes.get_errno()
        if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
            raise CannotCompact(f"the filesystem of {a} cannot exchange directories atomically")
        raise OSError(code, os.strerror(code), str(a))


def compact_partition(output: str, name: str, partition: Path, files: list[Path], run_id: str) -> int:
    """Replace the partition's files by one file of all their rows; returns the rows."""
    staged = staging_dir(output, name) / partition.name
    shutil.rmtree(staged, ignore_errors=True)
    staged.mkdir(parents=True)
    target = staged / f"compacted-{run_id}.parquet"
    rows = write_merged(files, name, target)
    with open(target, "rb") as f:
        os.fsync(f.fileno())  # on disk before it replaces what is
    exchange(partition, staged)
    # The old files, now in the staging directory, stay until the next compaction clears it: a reader that
    # began listing the partition before the exchange may still be reading its old directory, and would
    # find it empty (a partition silently missing) if they went now.
    return rows


def compact(output: str, window_days: float, now: datetime, run_id: str) -> Compacted:
    """Compact every dataset's partitions dated before ``now - window_days`` (call while holding the lock,
    after ``pipelines.datasets.check_datasets``)."""
    if "://" in output:
        raise CannotCompact(f"{output}: compaction needs a local filesystem (an object store cannot rename "
                            "atomically)")
    clear_staging(output)
    before = (now - timedelta(days=window_days)).date()
    result = Compacted()
    for name in DATASETS:
        before_files = after_files = 0
        for partition, partition_files in old_partitions(output, name, before):
            if len(partition_files) < 2:
                result.single += len(partition_files)
                continue
            try:
                result.rows += compact_partition(output, name, partition, partition_files, run_id)
            except (Unknown, pa.ArrowInvalid) as e:  # left as it is, and said
                shutil.rmtree(staging_dir(output, name) / partition.name, ignore_errors=True)
                result.skipped.append(f"{name}/{partition.name}: {e}")
                continue
            result.partitions += 1
            before_files += len(partition_files)
            after_files += 1
        result.files_before += before_files
        result.files_after += after_files
        result.by_dataset[name] = (before_files, after_files)
    return result
