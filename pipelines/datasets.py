"""The datasets as files: one schema in every file, and nothing in a dataset's tree that a reader trips on.

Readers open a dataset in their ordinary way (DuckDB's and Polars' globs, pandas, pyarrow, Spark), and most of
them take the schema of one file for all: a file of an older schema version would hide the columns added since
(or fail the query). So before a run or a compaction writes, holding the output's lock, ``check_datasets`` reads
the footer of every file of every dataset:

- a file of an older schema version is rewritten under its own name to the current schema (columns added since
  are null, renamed columns take their new names). The new file is written under the run's ``_tmp/`` and renamed
  over the old one, so a reader sees the old file or the new one, with the same rows; crash recovery, which reads
  files by their run-named names, finds them where they were;
- a file whose footer cannot be read (cut short, overwritten, not Parquet) is damaged: it is moved to
  ``<output>/_damaged/<run_id>/<dataset>/<partition>/``, where no reader looks, and reported. Before an articles
  or rejects file is moved, the feed validators are forgotten (``forget_feeds``), so the next run reads every feed
  in full and fetches again the entries whose rows were in it (the story index still knows their stories);
- a file of a newer schema version stops the check (``NewerSchema``): this version would add files without the
  newer columns. Nothing is changed before that is known.

What older versions left inside a dataset's tree is removed too: compaction's replaced files (``_compacting/``,
now kept outside the datasets) and Beam's ``beam-temp-*`` directories of runs killed before runs wrote under
``_tmp/``. A footer says nothing of the pages before it: a file damaged in the middle still fails the run that
reads it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from pipelines import current
from pipelines.paths import delete, ensure_dir, within
from pipelines.sinks import discard_uncommitted, merge, temp_dir
from schemas import ALL_DATASETS as DATASETS
from schemas import PARTITION_COLUMN, RENAMED, SCHEMA_VERSION

DAMAGED = "_damaged"
_RAW = CompressionTypes.UNCOMPRESSED
LEGACY = ("_compacting", "beam-temp-")  # what versions before 2.0 could leave inside a dataset's tree


class NewerSchema(Exception):
    """A dataset holds a file of a schema version newer than this newsbeam's."""


class Unknown(Exception):
    """A file holds what this version's schema cannot: a column it does not know."""


@dataclass
class Checked:
    upgraded: dict[str, int] = field(default_factory=dict)  # dataset -> files rewritten to the current schema
    set_aside: list[str] = field(default_factory=list)  # damaged files, as they were named in their dataset
    leftovers_removed: int = 0
    current_rebuilt: int | None = None  # stories written when stories_current was made again from the history

    def damaged(self, name: str) -> bool:
        return any(f"/{name}/{PARTITION_COLUMN}=" in path for path in self.set_aside)

    def as_dict(self) -> dict:
        out = {"files_upgraded": sum(self.upgraded.values()), "files_set_aside": list(self.set_aside),
               "leftovers_removed": self.leftovers_removed}
        if self.current_rebuilt is not None:
            out["stories_current_rebuilt"] = self.current_rebuilt
        return out


def version_of(schema: pa.Schema) -> tuple[int, ...] | None:
    """The newsbeam schema version a file's schema declares, or None if it declares none."""
    text = (schema.metadata or {}).get(b"newsbeam.schema_version")
    try:
        return tuple(int(part) for part in text.decode().split(".")) if text else None
    except ValueError:
        return None


CURRENT = tuple(int(part) for part in SCHEMA_VERSION.split("."))


def conformed(table: pa.Table, name: str) -> pa.Table:
    """Rows of dataset ``name`` as its current schema: renamed columns under their new names, columns added
    since as nulls, in the schema's order; ``Unknown`` if they hold a column the schema lacks."""
    schema = DATASETS[name]
    renames = RENAMED.get(name, {})
    table = table.rename_columns([renames.get(c, c) for c in table.column_names])
    extra = sorted(set(table.column_names) - set(schema.names) - {PARTITION_COLUMN})
    if extra:
        raise Unknown(f"columns {', '.join(extra)} are not in schema version {SCHEMA_VERSION}")
    columns = [table.column(f.name).cast(f.type) if f.name in table.column_names
               else pa.nulls(table.num_rows, f.type) for f in schema]
    return pa.Table.from_arrays(columns, schema=schema)


def _rel(path: str, base: str) -> str:
    return path[len(base) + 1:] if path.startswith(base + "/") else path


def _listing(output: str, name: str) -> tuple[list[str], set[str]]:
    """(data files, leftovers of older versions) of a dataset: data files are ``ingest_date=*/*.parquet``;
    leftovers are the directories older versions left (named as directories, ending in ``/``, on object
    stores, whose deletion takes a prefix)."""
    base = f"{output.rstrip('/')}/{name}"
    slash = "/" if "://" in output else ""
    data, leftovers = [], set()
    if FileSystems.exists(f"{base}/{LEGACY[0]}"):
        leftovers.add(f"{base}/{LEGACY[0]}{slash}")
    for meta in FileSystems.match([within(base, "**")])[0].metadata_list:
        parts = _rel(meta.path, base).split("/")
        legacy = [k for k, p in enumerate(parts[:-1]) if p == LEGACY[0] or p.startswith(LEGACY[1])]
        if legacy:
            leftovers.add(f"{base}/{'/'.join(parts[:legacy[0] + 1])}{slash}")
        elif len(parts) == 2 and parts[0].startswith(f"{PARTITION_COLUMN}=") and parts[1].endswith(".parquet"):
            data.append(meta.path)
    return sorted(data), leftovers


def _footer(path: str) -> pa.Schema | None:
    """The file's schema, or None when its footer cannot be read (the file is damaged)."""
    try:
        with FileSystems.open(path, compression_type=_RAW) as f:
            return pq.read_schema(f)
    except pa.ArrowException:
        return None


def rewrite(path: str, name: str, temp: str) -> None:
    """Rewrite a file to the current schema under its own name (written in ``temp``, then renamed over it)."""
    target = f"{temp}/{path.rsplit('/', 2)[-2]}-{path.rsplit('/', 1)[-1]}"
    merge([path], target, DATASETS[name], conform=partial(conformed, name=name))
    FileSystems.rename([target], [path])


def prepare(output: str, run_id: str, forget_feeds: Callable[[], None]) -> Checked:
    """What a run or compaction does first, holding the output's lock: remove what killed runs left
    uncommitted, then ``check_datasets``; a damaged ``stories_current`` file set aside, make that dataset again
    from the stories history (``pipelines.current.rebuild``)."""
    discard_uncommitted(output)
    checked = check_datasets(output, run_id, forget_feeds)
    if checked.damaged(current.NAME):
        checked.current_rebuilt = current.rebuild(output, run_id)
    return checked


def check_datasets(output: str, run_id: str, forget_feeds: Callable[[], None]) -> Checked:
    """Bring every file of every dataset to the current schema, set damaged files aside and remove what older
    versions left in the datasets' trees (call only while holding the output's lock). ``NewerSchema``, before
    anything changes, when a file is of a newer schema version."""
    checked = Checked()
    old: list[tuple[str, str]] = []  # (dataset, path)
    damaged: list[tuple[str, str]] = []
    leftovers: set[str] = set()
    for name in DATASETS:
        data, left = _listing(output, name)
        leftovers |= left
        for path in data:
            schema = _footer(path)
            if schema is None:
                damaged.append((name, path))
                continue
            version = version_of(schema)
            if version is not None and version > CURRENT:
                raise NewerSchema(f"{path} is of schema version {'.'.join(map(str, version))}, written by a newer "
                                  f"newsbeam; this one writes {SCHEMA_VERSION} and would mix the two")
            unknown = sorted(set(schema.names) - set(DATASETS[name].names) - set(RENAMED.get(name, {})))
            if unknown:
                raise NewerSchema(f"{path} holds columns schema version {SCHEMA_VERSION} does not know "
                                  f"({', '.join(unknown)}): this newsbeam would drop them or mix files without them")
            if version != CURRENT or schema.names != DATASETS[name].names:
                old.append((name, path))
    if any(name in ("articles", "rejects") for name, _ in damaged):
        forget_feeds()  # before the rows go out of sight, so their entries are fetched again
    for name, path in damaged:
        rest = _rel(path, f"{output.rstrip('/')}/{name}")
        target = f"{output.rstrip('/')}/{DAMAGED}/{run_id}/{name}/{rest}"
        ensure_dir(target.rsplit("/", 1)[0])
        FileSystems.rename([path], [target])
        checked.set_aside.append(path)
    temp = f"{temp_dir(output, run_id)}/upgrade"
    ensure_dir(temp)
    for name, path in old:
        rewrite(path, name, temp)
        checked.upgraded[name] = checked.upgraded.get(name, 0) + 1
    if leftovers:
        delete(sorted(leftovers))
        checked.leftovers_removed = len(leftovers)
    return checked
