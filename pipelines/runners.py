"""Beam's real runners on this machine: where they are installed, and installing them.

Prism, the portable runner Beam's Python SDK drives with ``--runner=PrismRunner``, is a Go command: it is
built with ``go install`` from the Go module proxy at the version of the installed Beam SDK (a runner of
another release is not promised to work with it), into a cache outside the checkout
(``$NEWSBEAM_RUNNERS``, default ``~/.cache/newsbeam/runners``), once: installing again finds it there and
asks no registry, and runs need no network. ``newsbeam run --runner=PrismRunner`` uses the installed binary
when no ``--prism_location`` is given, instead of Beam's download from the internet.

A stream starts that Prism itself (``prism_served``), as Beam would, except that it goes when newsbeam goes:
Beam's own launch leaves Prism behind when the Python process is killed outright, still running the job
whose in-process workers are gone, on up to most of a core, for good.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import apache_beam as beam
from apache_beam.options.pipeline_options import (
    PipelineOptions,
    PortableOptions,
    PrismRunnerOptions,
    StandardOptions,
)

PRISM_MODULE = "github.com/apache/beam/sdks/v2/go/cmd/prism"


class CannotInstall(Exception):
    """A runner could not be installed; the message is one line saying why."""


def cache_dir() -> Path:
    return Path(os.environ.get("NEWSBEAM_RUNNERS") or Path.home() / ".cache" / "newsbeam" / "runners")


def prism_version() -> str:
    return f"v{beam.__version__}"


def prism_path() -> Path:
    """Where the Prism binary of the installed Beam's version is, installed or not."""
    return cache_dir() / "prism" / prism_version() / "prism"


def install_prism() -> tuple[Path, bool]:
    """Install Prism at the Beam SDK's version unless it is there; (its path, whether it was installed now)."""
    target = prism_path()
    if target.is_file() and os.access(target, os.X_OK):
        return target, False
    go = shutil.which("go")
    if go is None:
        raise CannotInstall("prism: the go command is not installed (Go 1.26 or newer is needed)")
    staging = target.parent / "partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    # Go's module and build caches (about 1.5 GB for Prism) live only as long as the install: the binary is
    # what is kept
    env = {**os.environ, "GOBIN": str(staging / "bin"), "GOMODCACHE": str(staging / "mod"),
           "GOCACHE": str(staging / "build"), "GOFLAGS": f"{os.environ.get('GOFLAGS', '')} -modcacherw".strip()}
    try:
        done = subprocess.run([go, "install", f"{PRISM_MODULE}@{prism_version()}"], capture_output=True,
                              text=True, env=env, timeout=1800)
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise CannotInstall(f"prism {prism_version()}: go install failed: {last}")
        os.replace(staging / "bin" / "prism", target)  # complete or absent: a killed install leaves none here
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target, True


def with_installed_runner(beam_args: list[str], runner: str | None) -> list[str]:
    """``beam_args``, with ``--prism_location`` of the installed Prism for ``--runner=PrismRunner`` when the
    arguments name none and it is installed (else Beam would try to download it)."""
    if (runner or "").rsplit(".", 1)[-1].lower() != "prismrunner":
        return beam_args
    if any(a.startswith("--prism_location") for a in beam_args) or not prism_path().is_file():
        return beam_args
    return [*beam_args, f"--prism_location={prism_path()}"]


class CannotStart(Exception):
    """A runner's job server did not start; the message is one line saying why."""


# Runs the command, and kills it once the standard input ends: when newsbeam closes it, or when newsbeam's
# process ends in any way, kill -9 included (the kernel closes its end of the pipe); exits as the command does.
_TIED = ('trap "" INT TERM HUP; exec 3<&0; "$@" <&- 3<&- & child=$!; '
         '(read -r _ <&3; kill -9 "$child" 2>/dev/null) & exec 3<&-; wait "$child"')


@contextlib.contextmanager
def prism_served(beam_args: list[str], show_logs: bool = False, ready_within: float = 60.0) -> Iterator[list[str]]:
    """``beam_args`` for a job on a Prism job server started here and tied to this process (see the module's
    doc), with its address as ``--job_endpoint``; the arguments as they are when they name another runner,
    a job endpoint, or no local Prism binary (Beam then downloads and starts Prism itself). Prism logs to
    stderr at ``--prism_log_level`` when ``show_logs``; it is stopped when the block ends."""
    options = PipelineOptions(beam_args)
    prism = options.view_as(PrismRunnerOptions)
    binary = prism.prism_location
    if ((options.view_as(StandardOptions).runner or "").rsplit(".", 1)[-1].lower() != "prismrunner"
            or options.view_as(PortableOptions).job_endpoint or binary is None or not Path(binary).is_file()):
        yield beam_args
        return
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [binary, "--job_port", str(port), "--log_level", prism.prism_log_level,
               "--log_kind", "json", "--serve_http=false"]
    server = subprocess.Popen(["sh", "-c", _TIED, "prism", *command], stdin=subprocess.PIPE,
                              stdout=None if show_logs else subprocess.DEVNULL,
                              stderr=None if show_logs else subprocess.DEVNULL,
                              start_new_session=True)  # a terminal's Ctrl-C is newsbeam's to handle, not Prism's
    try:
        _wait_for(port, server, ready_within)
        yield [*beam_args, f"--job_endpoint=localhost:{port}"]
    finally:
        assert server.stdin is not None
        server.stdin.close()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def _wait_for(port: int, server: subprocess.Popen, within: float) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise CannotStart(f"prism: the job server exited at once (code {server.returncode}); run with --debug "
                              "to see its log")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1.0):
            return
        time.sleep(0.05)
    raise CannotStart(f"prism: the job server did not listen on port {port} within {within:.0f} s")
