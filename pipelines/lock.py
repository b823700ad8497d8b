"""One writer per output: a lease taken through Beam's filesystems, so it works wherever the output lives.

A run claims the output by writing ``<output>/_lock/<run_id>.json`` (its run id, host, process id and a
heartbeat time) and then listing ``_lock/``. If any other live claim is there, it withdraws its own and
refuses (``Locked``); otherwise it owns the output until it releases the claim. Two runs can never both
proceed: whichever lists second sees the other's claim, because each writes before it lists (this needs a
filesystem whose listing shows a completed write, as local and network filesystems, Google Cloud Storage,
S3 and Azure Blob Storage do). Two runs that start at the same instant may both refuse; the next scheduled
run proceeds.

A claim is live while its heartbeat, rewritten every ``HEARTBEAT`` seconds by a thread of the owning run, is
younger than ``STALE_AFTER``; a claim from this host whose process is gone is dead at once, so a run after a
killed one (cron on one machine) proceeds immediately. Dead claims are removed by the next claimant. What
the lease cannot rule out: an owner frozen for longer than ``STALE_AFTER`` (a suspended machine) that wakes
after another run has taken over, or hosts whose clocks disagree by that much.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from apache_beam.io.filesystems import FileSystems

from pipelines.paths import delete, within

HEARTBEAT = 10.0  # seconds between two heartbeats of the owner
STALE_AFTER = 120.0  # seconds without a heartbeat after which a claim is dead


class Locked(Exception):
    """Another live run owns the output."""


def lock_dir(output: str) -> str:
    return f"{output.rstrip('/')}/_lock"


@dataclass
class OutputLock:
    """The lease on ``output`` for run ``run_id``; use as a context manager (raises ``Locked``)."""

    output: str
    run_id: str
    host: str = field(default_factory=socket.gethostname)
    pid: int = field(default_factory=os.getpid)
    _stop: threading.Event = field(default_factory=threading.Event, init=False, repr=False)
    _beat: threading.Thread | None = field(default=None, init=False, repr=False)

    @property
    def path(self) -> str:
        return f"{lock_dir(self.output)}/{self.run_id}.json"

    def acquire(self) -> None:
        self._write_claim()
        for path, claim, written_at in self._claims():
            if claim.get("run_id") == self.run_id:
                continue
            if self._alive(claim, written_at):
                self.release()
                if _heartbeat(claim) is None:
                    raise Locked(f"output {self.output} has a claim that cannot be read ({path}, written "
                                 f"{time.time() - written_at:.0f}s ago; it counts as dead {STALE_AFTER:.0f}s "
                                 "after it was written); try again later")
                raise Locked(f"output {self.output} is being written by run {claim.get('run_id')} "
                             f"(host {claim.get('host')}, pid {claim.get('pid')}, last heartbeat "
                             f"{claim.get('heartbeat')}); try again later")
            delete([path])  # a dead run's claim
        self._stop.clear()
        self._beat = threading.Thread(target=self._heartbeat, name="newsbeam-lock-heartbeat", daemon=True)
        self._beat.start()

    def release(self) -> None:
        self._stop.set()
        if self._beat is not None:
            self._beat.join()
            self._beat = None
        delete([self.path])

    def __enter__(self) -> OutputLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def _write_claim(self) -> None:
        claim = {"run_id": self.run_id, "host": self.host, "pid": self.pid,
                 "heartbeat": datetime.now(UTC).isoformat()}
        with FileSystems.create(self.path, compression_type="uncompressed") as f:
            f.write(json.dumps(claim).encode())

    def _heartbeat(self) -> None:
        while not self._stop.wait(HEARTBEAT):
            self._write_claim()

    def _claims(self) -> list[tuple[str, dict[str, Any], float]]:
        """(path, claim, when its file was last written) of every claim; a claim that cannot be read is
        ``{"run_id": <its file's name>}``."""
        found = FileSystems.match([within(lock_dir(self.output), "*.json")])[0].metadata_list
        claims = []
        for meta in found:
            try:
                with FileSystems.open(meta.path, compression_type="uncompressed") as f:
                    claim = json.loads(f.read())
            except (OSError, ValueError):  # being rewritten, garbage, or gone since the listing
                claim = None
            if not isinstance(claim, dict):
                claim = {}
            claim.setdefault("run_id", meta.path.rsplit("/", 1)[-1].removesuffix(".json"))
            claims.append((meta.path, claim, meta.last_updated_in_seconds))
        return claims

    def _alive(self, claim: dict[str, Any], written_at: float) -> bool:
        beat = _heartbeat(claim)
        if beat is None:  # unreadable: as old as its file
            return time.time() - written_at <= STALE_AFTER
        if (datetime.now(UTC) - beat).total_seconds() > STALE_AFTER:
            return False
        if claim.get("host") == self.host and isinstance(claim.get("pid"), int):
            return _process_exists(claim["pid"])
        return True


def _heartbeat(claim: dict[str, Any]) -> datetime | None:
    try:
        beat = datetime.fromisoformat(claim["heartbeat"])
    except (KeyError, TypeError, ValueError):
        return None
    return beat if beat.tzinfo is not None else None


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        return True
    return True
