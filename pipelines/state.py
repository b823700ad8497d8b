"""Versioned state snapshots between runs, through Beam's filesystems.

A state directory holds ``snapshot-<run_id>.json.gz`` files and a ``CURRENT`` file naming the one in
force. Saving is two steps: a run writes its snapshot (``write``, or ``write_lines`` straight from the
records, so a large one is never held encoded), and later commits it (``commit``) by replacing
``CURRENT``. A crash in between leaves the previous state in force and the written file unused; the last
``KEEP`` snapshots are kept for inspection and recovery. The stages decide what a snapshot holds (the
story index, feed validators) and when it is committed (after the articles are written).
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterable, Iterator
from typing import Any

from apache_beam.io.filesystems import FileSystems

KEEP = 3


def encode(doc: Any) -> bytes:
    return gzip.compress(json.dumps(doc).encode(), mtime=0)


def write_lines(state_dir: str, run_id: str, head: dict, records: Iterable[tuple[str, Any]]) -> str:
    """Writes a snapshot as JSON Lines, ``head`` then ``{kind: record}`` per line, compressed into its file
    as they come, so a large one (the story index) is never held whole, as objects, text or bytes, written
    or read (``load_lines``). It takes effect once committed; returns its file name."""
    name = _name(run_id)
    with FileSystems.create(FileSystems.join(state_dir, name), compression_type="uncompressed") as f, \
            gzip.GzipFile(fileobj=f, mode="wb", mtime=0) as gz:
        gz.write(json.dumps(head).encode() + b"\n")
        for kind, record in records:
            gz.write(json.dumps({kind: record}).encode() + b"\n")
    return name


def load(state_dir: str) -> Any | None:
    """The latest snapshot's JSON document, or None before the first save."""
    path = _current(state_dir)
    if path is None:
        return None
    with FileSystems.open(path, compression_type="uncompressed") as f:
        return json.loads(gzip.decompress(f.read()))


def load_lines(state_dir: str) -> Iterator[Any] | None:
    """The latest snapshot's lines, each decoded as JSON, read as they are consumed; None before the first
    save. (A snapshot written whole by ``encode`` is one line.)"""
    path = _current(state_dir)
    return None if path is None else _lines(path)


def _lines(path: str) -> Iterator[Any]:
    with FileSystems.open(path, compression_type="uncompressed") as f, gzip.GzipFile(fileobj=f) as gz:
        for line in gz:
            yield json.loads(line)


def _current(state_dir: str) -> str | None:
    """The path of the snapshot ``CURRENT`` names, if any."""
    pointer = FileSystems.join(state_dir, "CURRENT")
    if not FileSystems.exists(pointer):
        return None
    with FileSystems.open(pointer, compression_type="uncompressed") as f:
        return FileSystems.join(state_dir, f.read().decode().strip())


def _name(run_id: str) -> str:
    return f"snapshot-{run_id}.json.gz"


def write(state_dir: str, run_id: str, snapshot: bytes) -> str:
    """Writes an encoded snapshot (``encode``); it takes effect once committed. Returns its file name."""
    name = _name(run_id)
    _write(FileSystems.join(state_dir, name), snapshot)
    return name


def save(state_dir: str, run_id: str, snapshot: bytes) -> str:
    """Writes an encoded snapshot and commits it; returns its file name."""
    return commit(state_dir, write(state_dir, run_id, snapshot))


def commit(state_dir: str, name: str) -> str:
    """Makes the written snapshot ``name`` the one in force, and drops all but the ``KEEP`` latest."""
    tmp = FileSystems.join(state_dir, f"CURRENT.{name}.tmp")
    _write(tmp, name.encode())
    pointer = FileSystems.join(state_dir, "CURRENT")
    if FileSystems.exists(pointer):
        FileSystems.delete([pointer])
    FileSystems.rename([tmp], [pointer])
    matches = FileSystems.match([FileSystems.join(state_dir, "snapshot-*.json.gz")])[0].metadata_list
    old = sorted(m.path for m in matches)[:-KEEP]  # run ids start with a UTC timestamp: names sort by age
    old = [path for path in old if not path.endswith(f"/{name}")]  # never the one in force
    if old:
        FileSystems.delete(old)
    return name


def _write(path: str, data: bytes) -> None:
    with FileSystems.create(path, compression_type="uncompressed") as f:
        f.write(data)
