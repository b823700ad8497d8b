"""Output locations are paths, never patterns.

An output may be named anything a filesystem allows, ``*``, ``?`` and ``[`` included, so every listing of it
builds its pattern from ``literal(location)`` plus the pattern of what is looked for beneath it: Beam's
filesystems (local and object stores alike) match ``[*]`` as a literal ``*``. A relative local output is made
absolute once, at the start (``resolve_output``), so every worker and every step sees the same location.
Beam's local filesystem deletes by pattern too, so deletions go through ``delete``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable

from apache_beam.io.filesystems import FileSystems

_GLOB = {"*": "[*]", "?": "[?]", "[": "[[]"}


def literal(location: str) -> str:
    """``location`` as a pattern that matches only itself."""
    return "".join(_GLOB.get(c, c) for c in location)


def within(location: str, pattern: str) -> str:
    """The pattern ``pattern`` beneath ``location``, taken literally."""
    return f"{literal(location.rstrip('/'))}/{pattern}"


def resolve_output(location: str) -> str:
    """A filesystem URL as it is; a local path made absolute and normalised (no trailing slash)."""
    if "://" in location:
        return location.rstrip("/") or location
    return os.path.abspath(os.path.expanduser(location))


def delete(locations: Iterable[str]) -> None:
    """Delete files and directories (with what they hold) by name; those already gone are no error."""
    locations = list(locations)
    remote = [p for p in locations if "://" in p]
    if remote:
        FileSystems.delete(remote)  # object stores delete by name
    for path in (p for p in locations if "://" not in p):
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        elif os.path.lexists(path):
            os.remove(path)


def ensure_dir(location: str) -> None:
    """Make a directory (and its parents) where the filesystem has directories; object stores need none."""
    if "://" not in location:
        os.makedirs(location, exist_ok=True)


def read_bytes(path: str) -> bytes:
    with FileSystems.open(path, compression_type="uncompressed") as f:
        return f.read()


def write_bytes(path: str, data: bytes) -> None:
    with FileSystems.create(path, compression_type="uncompressed") as f:
        f.write(data)
