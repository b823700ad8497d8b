"""Versioned state snapshots between runs, through Beam's filesystems.

A state directory holds ``snapshot-<run_id>.json.gz`` files and a ``CURRENT`` file naming the one in
force. Saving is two steps: a run writes its snapshot (``write``, or ``write_lines`` straight from the
records, so a large one is never held encoded), and later commits it (``commit``) by replacing
``CURRENT``. A crash in between leaves the previous state in force and the written file unused; the last
``KEEP`` snapshots are kept for inspection and recovery. The stages decide what a snapshot holds (the
story index, feed validators) and when it is committed (after the articles are written).

A snapshot in force that cannot be read (damaged, cut short, removed) does not stop a run: ``load`` passes
over it to the newest older one that reads, and says which it passed over. What was added since is what
the stages recover anyway after a run that died before committing (the story index from the stored
articles, see ``pipelines.stories.recover``; feed validators by fetching the feeds in full).
"""

from __future__ import annotations

import gzip
import json
import logging
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from apache_beam.io.filesystems import FileSystems

from pipelines.paths import delete, within

KEEP = 3
T = TypeVar("T")
_log = logging.getLogger(__name__)


class UnsupportedFormat(Exception):
    """A snapshot of a format this version does not know (written by a newer one): refused, not passed over,
    so an older version never replaces state it cannot read."""


def encode(doc: Any) -> bytes:
    return gzip.compress(json.dumps(doc).encode(), mtime=0)


def write_lines(state_dir: str, run_id: str, head: dict, records: Iterable[tuple[str, Any]]) -> str:
    """Writes a snapshot as JSON Lines, ``head`` then ``{kind: record}`` per line, compressed into its file
    as they come, so a large one (the story index) is never held whole, as objects, text or bytes, written
    or read (``load``). It takes effect once committed; returns its file name."""
    name = _name(run_id)
    with FileSystems.create(FileSystems.join(state_dir, name), compression_type="uncompressed") as f, \
            gzip.GzipFile(fileobj=f, mode="wb", mtime=0) as gz:
        gz.write(json.dumps(head).encode() + b"\n")
        for kind, record in records:
            gz.write(json.dumps({kind: record}).encode() + b"\n")
    return name


def load(state_dir: str, parse: Callable[[Iterator[Any]], T]) -> tuple[T | None, list[str]]:
    """``parse`` of the lines of the snapshot in force, each decoded as JSON as it is consumed (a snapshot
    written whole by ``encode`` is one line), or None before the first commit; and a line for each snapshot
    passed over because it could not be read or parsed (then the newest older one that can is used, or
    None if none can)."""
    unreadable: list[str] = []
    for path in _in_force_then_older(state_dir, unreadable):
        try:
            return parse(_lines(path)), unreadable
        except UnsupportedFormat:
            raise
        except Exception as e:  # whatever a damaged file raises: the next older snapshot is tried
            unreadable.append(f"{path}: {type(e).__name__}: {e}"[:500])
            _log.warning("state snapshot passed over, it cannot be read: %s", unreadable[-1])
    return None, unreadable


def _in_force_then_older(state_dir: str, unreadable: list[str]) -> Iterator[str]:
    """The snapshot ``CURRENT`` names, then the older ones, newest first; all of them, newest first, when
    ``CURRENT`` itself cannot be read; none before the first commit. The directory is listed only when the
    one in force cannot be read."""
    pointer = FileSystems.join(state_dir, "CURRENT")
    if not FileSystems.exists(pointer):
        return

    def newest_first() -> list[str]:
        matches = FileSystems.match([within(state_dir, "snapshot-*.json.gz")])[0].metadata_list
        return sorted((m.path for m in matches), reverse=True)  # names sort by age (see commit)

    try:
        with FileSystems.open(pointer, compression_type="uncompressed") as f:
            current = f.read().decode().strip()
        if not (current.startswith("snapshot-") and current.endswith(".json.gz") and "/" not in current):
            raise ValueError(f"names no snapshot: {current[:100]!r}")
    except Exception as e:  # a damaged pointer: every snapshot is a candidate
        unreadable.append(f"{pointer}: {type(e).__name__}: {e}"[:500])
        _log.warning("state pointer cannot be read: %s", unreadable[-1])
        yield from newest_first()
        return
    yield FileSystems.join(state_dir, current)
    yield from (p for p in newest_first() if p.rsplit("/", 1)[-1] < current)


def _lines(path: str) -> Iterator[Any]:
    with FileSystems.open(path, compression_type="uncompressed") as f, gzip.GzipFile(fileobj=f) as gz:
        for line in gz:
            yield json.loads(line)


def _name(run_id: str) -> str:
    return f"snapshot-{run_id}.json.gz"


def write(state_dir: str, run_id: str, snapshot: bytes) -> str | None:
    """Writes an encoded snapshot (``encode``); it takes effect once committed. Returns its file name, or None
    when the snapshot in force holds the same (nothing to write or commit)."""
    if _in_force(state_dir) == snapshot:
        return None
    name = _name(run_id)
    _write(FileSystems.join(state_dir, name), snapshot)
    return name


def _in_force(state_dir: str) -> bytes | None:
    """The bytes of the snapshot in force, or None if there is none or it cannot be read."""
    try:
        with FileSystems.open(FileSystems.join(state_dir, "CURRENT"), compression_type="uncompressed") as f:
            current = f.read().decode().strip()
        with FileSystems.open(FileSystems.join(state_dir, current), compression_type="uncompressed") as f:
            return f.read()
    except Exception:  # none yet, or damaged: write anew
        return None


def commit(state_dir: str, name: str | None) -> str | None:
    """Makes the written snapshot ``name`` the one in force, and drops all but the ``KEEP`` latest; nothing
    when ``name`` is None (``write`` found nothing new)."""
    if name is None:
        return None
    tmp = FileSystems.join(state_dir, f"CURRENT.{name}.tmp")
    _write(tmp, name.encode())
    pointer = FileSystems.join(state_dir, "CURRENT")
    FileSystems.rename([tmp], [pointer])  # replaces it in one step (a local rename; an object store's copy)
    matches = FileSystems.match([within(state_dir, "snapshot-*.json.gz")])[0].metadata_list
    old = sorted(m.path for m in matches)[:-KEEP]  # run ids start with a UTC timestamp: names sort by age
    old = [path for path in old if not path.endswith(f"/{name}")]  # never the one in force
    delete(old)
    return name


def _write(path: str, data: bytes) -> None:
    with FileSystems.create(path, compression_type="uncompressed") as f:
        f.write(data)


def load_named(state_dir: str, name: str, parse: Callable[[Iterator[Any]], T]) -> T:
    """``parse`` of the lines of the snapshot ``name``, committed or not (a stream's latest, see
    ``pipelines.stories.assign``)."""
    return parse(_lines(FileSystems.join(state_dir, name)))
