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
from collections.abc import Iterable, Mapping
from typing import Any

from apache_beam.io.filesystems import FileSystems

KEEP = 3


def encode(doc: Any) -> bytes:
    return gzip.compress(json.dumps(doc).encode(), mtime=0)


def encode_streamed(head: dict, lists: Mapping[str, Iterable]) -> bytes:
    """What ``encode({**head, **lists})`` gives, with each list taken item by item: a large document (the story
    index) is compressed as it is produced, never held whole as Python objects and text."""
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", mtime=0) as gz:
        gz.write(json.dumps(head)[:-1].encode())  # head's fields, without the closing brace
        for n, (name, items) in enumerate(lists.items()):
            gz.write(f"{', ' if head or n else ''}{json.dumps(name)}: [".encode())
            for i, item in enumerate(items):
                gz.write(f"{', ' if i else ''}{json.dumps(item)}".encode())
            gz.write(b"]")
        gz.write(b"}")
    return out.getvalue()


def load(state_dir: str) -> Any | None:
    """The latest snapshot's JSON document, or None before the first save."""
    pointer = FileSystems.join(state_dir, "CURRENT")
    if not FileSystems.exists(pointer):
        return None
    with FileSystems.open(pointer, compression_type="uncompressed") as f:
        name = f.read().decode().strip()
    with FileSystems.open(FileSystems.join(state_dir, name), compression_type="uncompressed") as f:
        return json.loads(gzip.decompress(f.read()))


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
