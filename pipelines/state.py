"""Versioned state snapshots between runs, through Beam's filesystems.

A state directory holds ``snapshot-<run_id>.json.gz`` files and a ``CURRENT`` file naming the latest.
A snapshot is written before ``CURRENT`` is replaced, so a crash in between leaves the previous state in
force; the last ``KEEP`` snapshots are kept for inspection and recovery. The stages decide what a
snapshot holds (the story index, feed validators) and when it is saved (after the articles are written).
"""

from __future__ import annotations

import gzip
import io
import json
from collections.abc import Iterable, Iterator
from typing import Any

from apache_beam.io.filesystems import FileSystems

KEEP = 3


def encode(doc: Any) -> bytes:
    return gzip.compress(json.dumps(doc).encode(), mtime=0)


def encode_lines(head: dict, records: Iterable[tuple[str, Any]]) -> bytes:
    """A snapshot as JSON Lines: ``head``, then ``{kind: record}`` per line, compressed as they come, so a
    large one (the story index) is never held whole as Python objects and text, written or read
    (``load_lines``)."""
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", mtime=0) as gz:
        gz.write(json.dumps(head).encode() + b"\n")
        for kind, record in records:
            gz.write(json.dumps({kind: record}).encode() + b"\n")
    return out.getvalue()


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


def save(state_dir: str, run_id: str, snapshot: bytes) -> str:
    """Write an encoded snapshot and make it CURRENT; returns its file name."""
    name = f"snapshot-{run_id}.json.gz"
    _write(FileSystems.join(state_dir, name), snapshot)
    tmp = FileSystems.join(state_dir, f"CURRENT.{run_id}.tmp")
    _write(tmp, name.encode())
    pointer = FileSystems.join(state_dir, "CURRENT")
    if FileSystems.exists(pointer):
        FileSystems.delete([pointer])
    FileSystems.rename([tmp], [pointer])
    matches = FileSystems.match([FileSystems.join(state_dir, "snapshot-*.json.gz")])[0].metadata_list
    old = sorted(m.path for m in matches)[:-KEEP]  # run ids start with a UTC timestamp: names sort by age
    if old:
        FileSystems.delete(old)
    return name


def _write(path: str, data: bytes) -> None:
    with FileSystems.create(path, compression_type="uncompressed") as f:
        f.write(data)
