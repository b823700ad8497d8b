"""Beam's real runners: installing Prism, and the same output on Prism as in process.

The Prism tests need ``newsbeam install-runners`` to have run (``.ci/run`` does); without the binary they skip
and say so."""

import json
import os
import socket
from pathlib import Path

import pytest

from pipelines import runners
from pipelines.cli import main
from tests.conftest import FIXTURES_CONFIG, PRISM, needs_prism, read_dataset
from tests.test_stream import assert_each_served_entry_ends_once, config_for, seed_stories
from tests.test_stream import site as site  # noqa: F401 (the fixture)

OWN = {"run_id", "fetched_at", "rejected_at", "ingest_date", "first_seen", "last_seen"}


def test_install_is_idempotent_and_a_run_on_prism_uses_the_installed_binary(tmp_path, monkeypatch):
    monkeypatch.setenv("NEWSBEAM_RUNNERS", str(tmp_path))
    assert runners.with_installed_runner(["--runner=PrismRunner"], "PrismRunner") == ["--runner=PrismRunner"]
    monkeypatch.setattr(runners.shutil, "which", lambda _: None)  # no go: installing needs it ...
    with pytest.raises(runners.CannotInstall, match="the go command is not installed"):
        runners.install_prism()
    binary = runners.prism_path()
    binary.parent.mkdir(parents=True)
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    assert runners.install_prism() == (binary, False)  # ... but not once it is installed
    assert runners.with_installed_runner(["--runner=PrismRunner"], "PrismRunner") == [
        "--runner=PrismRunner", f"--prism_location={binary}"]
    assert runners.with_installed_runner(["--prism_location=/x"], "PrismRunner") == ["--prism_location=/x"]
    assert runners.with_installed_runner([], None) == []
    assert str(binary).startswith(str(tmp_path)) and runners.prism_version() in str(binary)


def test_prism_is_served_by_newsbeam_only_for_a_local_binary_and_a_failed_start_is_one_line(tmp_path):
    broken = tmp_path / "prism"
    broken.write_text("#!/bin/sh\nexit 3\n")
    broken.chmod(0o755)
    for args in (["--runner=FlinkRunner", f"--prism_location={broken}"],  # another runner
                 ["--runner=PrismRunner", f"--prism_location={broken}", "--job_endpoint=localhost:1"],
                 ["--runner=PrismRunner", f"--prism_location={tmp_path / 'none'}"]):  # Beam downloads it
        with runners.prism_served(args) as served:
            assert served == args
    with pytest.raises(runners.CannotStart, match="exited at once"), \
            runners.prism_served(["--runner=PrismRunner", f"--prism_location={broken}"]):
        pass


@needs_prism
def test_a_served_prism_listens_until_the_block_ends():
    with runners.prism_served(["--runner", "PrismRunner", "--prism_location", str(PRISM)]) as served:  # either form
        port = int(served[-1].removeprefix("--job_endpoint=localhost:"))
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()


def rows(out: Path, name: str) -> list[str]:
    """A dataset's rows without the values of the run that wrote them (ids, times)."""
    return sorted(json.dumps({k: str(v) for k, v in r.items() if k not in OWN}, sort_keys=True)
                  for r in read_dataset(out, name).to_pylist())


@needs_prism
def test_the_fixtures_job_on_prism_equals_the_in_process_run_and_a_rerun_stores_nothing(tmp_path):
    outputs = {"in_process": [], "prism": ["--runner=PrismRunner"]}
    for name, args in outputs.items():
        assert main(["run", "--config", str(FIXTURES_CONFIG), "--output", str(tmp_path / name), *args]) == 0
    for dataset in ("articles", "stories", "rejects"):
        assert rows(tmp_path / "prism", dataset) == rows(tmp_path / "in_process", dataset), dataset
    assert main(["run", "--config", str(FIXTURES_CONFIG), "--output", str(tmp_path / "prism"),
                 "--runner=PrismRunner"]) == 0
    summaries = sorted((tmp_path / "prism" / "_runs").glob("*.json"), key=os.path.getmtime)
    first, again = (json.loads(p.read_text()) for p in summaries)
    assert first["reconciled"] and first["metrics_available"] and first["articles_written"] == 26
    assert again["reconciled"] and again["articles_written"] == 0 and again["entries"]["seen"] == 0


@needs_prism
def test_three_runs_of_a_growing_feed_on_prism_equal_those_in_process(tmp_path, site):  # noqa: F811
    """Copies, a dead link and stories that continue across runs: on Prism as in process, with each served
    entry stored or rejected once, and the seeds spread over three runs one story."""
    for name, args in (("in_process", []), ("prism", ["--runner=PrismRunner"])):
        site.hits.clear()  # the feed lists one more chunk of entries at each request
        (tmp_path / name).mkdir()
        config = config_for(tmp_path / name, site)
        for _ in range(3):
            assert main(["run", "--config", config, *args]) == 0
        assert_each_served_entry_ends_once(tmp_path / name / "out", site)
    for dataset in ("articles", "stories", "rejects"):
        assert rows(tmp_path / "prism" / "out", dataset) == rows(tmp_path / "in_process" / "out", dataset), dataset
    assert len(seed_stories(tmp_path / "prism" / "out")) == 1


FILLER = ("officials said the statement released that day noted many residents were still waiting for "
          "details about what happened next while local groups asked further questions").split()


class Newsroom:
    """A feed on 127.0.0.1 that gains ``per_run`` pages before each run: three write-ups of each event (their
    own sentences, the event's rare names), every tenth page an exact copy of the one before, every
    fifteenth a near copy (one sentence changed), every 25th a dead link."""

    def __init__(self, per_run: int):
        self.per_run, self.published = per_run, 0

    def body(self, n: int) -> str:
        import random

        if n % 10 == 9:
            return self.body(n - 1)  # an exact copy
        near = n % 15 == 14
        rng = random.Random(n - 1 if near else n)
        event = (n - 1 if near else n) // 3
        names = [f"zq{event:04d}{s}" for s in ("alpha", "brook", "cinder", "delta")]
        sentences = [" ".join(rng.sample(FILLER, 10) + rng.sample(names, 2)).capitalize() + "." for _ in range(8)]
        if near:
            sentences[-1] = f"A correction was added to this report as number {n}."
        return "".join(f"<p>{s}</p>" for s in sentences)

    def answer(self, path: str):
        if path == "/feed.xml":
            items = "".join(f"<item><title>Report {n}</title><link>{self.base}/a/{n}</link></item>"
                            for n in range(self.published))
            return 200, "application/rss+xml", (f'<?xml version="1.0"?><rss version="2.0"><channel><title>t'
                                                f"</title><link>{self.base}/</link>{items}</channel></rss>").encode()
        n = int(path.rsplit("/", 1)[-1]) if path.startswith("/a/") and path[3:].isdigit() else -1
        if not 0 <= n < self.published or n % 25 == 24:
            return 404, "text/plain", b"gone"
        page = f"<html><head><title>Report {n}</title></head><body><article>{self.body(n)}</article></body></html>"
        return 200, "text/html; charset=utf-8", page.encode()


@needs_prism
def test_a_few_hundred_pages_over_three_runs_on_prism_equal_those_in_process(tmp_path):
    from benchmarks.localserver import serve

    room = Newsroom(per_run=100)
    server, room.base = serve(room.answer)
    try:
        for name, args in (("in_process", []), ("prism", ["--runner=PrismRunner"])):
            room.published = 0  # the same history for each runner
            config = tmp_path / f"{name}.toml"
            config.write_text(f'[[feeds]]\nurl = "{room.base}/feed.xml"\n[fetch]\nallow_private_addresses = true\n'
                              f'host_delay = 0.0\nretries = 0\nobey_robots = false\n'
                              f'[output]\npath = "{tmp_path / name}"\n')
            for _ in range(3):
                room.published += room.per_run
                assert main(["run", "--config", str(config), *args]) == 0
    finally:
        server.shutdown()
    for dataset in ("articles", "stories", "rejects"):
        assert rows(tmp_path / "prism", dataset) == rows(tmp_path / "in_process", dataset), dataset
    articles = read_dataset(tmp_path / "prism", "articles").to_pylist()
    rejects = read_dataset(tmp_path / "prism", "rejects").to_pylist()
    assert len(articles) + len(rejects) == 300 and len(rejects) == 12
    served = [n for n in range(300) if n % 25 != 24]
    copies = [n for n in served if n % 10 == 9 or n % 15 == 14]  # exact, then near copies
    assert sum(a["duplicate_of"] is not None for a in articles) == len(copies) == 32
    stories = read_dataset(tmp_path / "prism", "stories").to_pylist()
    assert len({s["run_id"] for s in stories}) == 3 and any(s["article_count"] >= 3 for s in stories)
