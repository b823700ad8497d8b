"""Beam's real runners on this machine: where they are installed, and installing them.

Prism, the portable runner Beam's Python SDK drives with ``--runner=PrismRunner``, is a Go command: it is
built with ``go install`` from the Go module proxy at the version of the installed Beam SDK (a runner of
another release is not promised to work with it), into a cache outside the checkout
(``$NEWSBEAM_RUNNERS``, default ``~/.cache/newsbeam/runners``), once: installing again finds it there and
asks no registry, and runs need no network. ``newsbeam run --runner=PrismRunner`` uses the installed binary
when no ``--prism_location`` is given, instead of Beam's download from the internet.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import apache_beam as beam

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
