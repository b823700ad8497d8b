"""The WriteCurrent stage: ``stories_current/``, one row per story as the latest run left it.

``stories/`` keeps a row per story per run that changed it (its history); an analyst asking for the stories as
they stand would first have to pick each story's latest row. ``stories_current/`` answers that with a plain
read: each story is in exactly one file, the partition of the date of the run that created it
(``ingest_date=<that date>/stories.parquet``), and a run replaces the files of the partitions holding the
stories it changed: the previous file's rows, with the changed stories' rows replaced. A story's partition
never changes, so a story is never in two files, and a file is replaced in one rename, so a reader sees it
before or after, never half.

A run's new files are written under its ``_tmp/`` directory, then renamed into place once every dataset of
the run is written and before its story index is committed: a run killed before the renames leaves the previous
files, and the next run (which restores the killed run's stored articles to the index) rewrites the partitions
of the stories it restores. The partitions a run rewrites are those of the stories it changed, all of them
created within the story window, so a run's cost does not grow with the history.

A ``stories_current`` file set aside as damaged (``pipelines.datasets``) is made again from the history by the
next run (``rebuild``): each story's latest row, in the partition of the date of its first row.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from pipelines.paths import ensure_dir
from pipelines.records import Run, Story
from pipelines.sinks import dataset_files, partition_dir, temp_dir, to_row
from schemas import PARTITION_COLUMN, STORIES_CURRENT

NAME = "stories_current"
FILE = "stories.parquet"


def current_file(output: str, day: str) -> str:
    return f"{partition_dir(output, NAME, day)}/{FILE}"


def merged(previous: Iterable[dict], changed: Iterable[dict]) -> list[dict]:
    """A partition's rows: the previous rows with the changed stories' rows replaced, by story id."""
    rows = {row["story_id"]: row for row in previous}
    rows.update((row["story_id"], row) for row in changed)
    return [rows[k] for k in sorted(rows)]


def read_current(path: str) -> list[dict]:
    if not FileSystems.exists(path):
        return []
    with FileSystems.open(path, compression_type="uncompressed") as f:
        table = pq.read_table(f)
    return table.select(STORIES_CURRENT.names).to_pylist()


def rebuild(output: str, run_id: str) -> int:
    """Every ``stories_current`` partition written again from ``stories/``: each story's row of its latest run,
    in the partition of the date of its first row (the run that created it). Returns the stories written."""
    tables = []
    for meta in FileSystems.match([dataset_files(output, "stories")])[0].metadata_list:
        day = meta.path.rsplit(f"/{PARTITION_COLUMN}=", 1)[1].split("/", 1)[0]
        with FileSystems.open(meta.path, compression_type="uncompressed") as f:
            table = pq.read_table(f).select(STORIES_CURRENT.names)
        tables.append(table.append_column("_born", pa.array([day] * table.num_rows, pa.string())))
    if not tables:
        return 0
    history = pa.concat_tables(tables).sort_by([("story_id", "ascending"), ("run_id", "descending")])
    born = {row["story_id"]: row["_born_min"] for row in
            history.group_by("story_id").aggregate([("_born", "min")]).to_pylist()}
    ids = history.column("story_id").to_pylist()
    latest = history.take([k for k in range(len(ids)) if k == 0 or ids[k] != ids[k - 1]]).drop_columns(["_born"])
    by_day: dict[str, list[dict]] = {}
    for row in latest.to_pylist():
        by_day.setdefault(born[row["story_id"]], []).append(row)
    for day, rows in sorted(by_day.items()):
        _commit(_stage(output, run_id, day, rows), None)
    return latest.num_rows


def _stage(output: str, run_id: str, day: str, rows: list[dict]) -> tuple[str, str]:
    """Writes a partition's rows under the run's ``_tmp/``; returns (that file, the file it replaces)."""
    staged = f"{temp_dir(output, run_id)}/{NAME}/{day}.parquet"
    ensure_dir(staged.rsplit("/", 1)[0])
    with FileSystems.create(staged, compression_type="uncompressed") as f:
        pq.write_table(pa.Table.from_pylist(rows, schema=STORIES_CURRENT), f, compression="zstd")
    return staged, current_file(output, day)


def replace_partitions(output: str, run: Run, stories: Iterable[tuple[str, Story]]) -> list[str]:
    """A stream poll's ``WriteCurrent``, in one step: the partitions of the stories (creation date, Story)
    written again with them, each replaced in one rename; returns the files replaced."""
    by_day: dict[str, list[Story]] = {}
    for day, story in stories:
        by_day.setdefault(day, []).append(story)
    staged = [_StageFn(output, run).process((day, found)) for day, found in sorted(by_day.items())]
    return [_commit(one, None) for each in staged for one in each]


class _StageFn(beam.DoFn):
    def __init__(self, output: str, run: Run):
        self._output, self._run = output, run

    def process(self, grouped: tuple[str, Iterable[Story]]) -> Iterator[tuple[str, str]]:
        day, stories = grouped
        rows = merged(read_current(current_file(self._output, day)), (to_row(s, self._run) for s in stories))
        yield _stage(self._output, self._run.run_id, day, rows)


def _commit(staged_final: tuple[str, str], _written) -> str:
    staged, final = staged_final
    ensure_dir(final.rsplit("/", 1)[0])
    FileSystems.rename([staged], [final])  # replaces the previous file in one step
    return final


class WriteCurrent(beam.PTransform):
    """(creation date, Story) -> the replaced ``stories_current`` files, renamed into place only after ``after``
    (the files of every dataset of the run) is written."""

    def __init__(self, output: str, run: Run, after):
        super().__init__()
        self._output, self._run, self._after = output, run, after

    def expand(self, stories):
        return (
            stories
            | "ByDay" >> beam.GroupByKey()
            | "Stage" >> beam.ParDo(_StageFn(self._output, self._run))
            | "Commit" >> beam.Map(_commit, beam.pvalue.AsList(self._after))
        )
