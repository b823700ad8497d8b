"""Nothing stored twice, whatever happens to a run: killed runs, leftovers, a second writer."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import duckdb
import pyarrow.dataset as ds
import pytest

from pipelines.cli import LOCKED, main
from pipelines.lock import STALE_AFTER, Locked, OutputLock
from tests.conftest import FIXTURES_CONFIG, ROOT

FIXTURE_ARTICLES = 26  # articles the fixtures job stores


def stored_ids_by_every_reader(out) -> list[list[str]]:
    """The article ids each reader the README shows sees: pyarrow.dataset and a DuckDB glob."""
    arrow = ds.dataset(str(out / "articles"), format="parquet", partitioning="hive").to_table(
        columns=["article_id"]).column("article_id").to_pylist()
    glob = str(out / "articles" / "*" / "*.parquet")
    duck = [r[0] for r in duckdb.sql(f"SELECT article_id FROM read_parquet('{glob}', hive_partitioning = true)")
            .fetchall()]
    return [arrow, duck]


def assert_each_article_once(out):
    for seen in stored_ids_by_every_reader(out):
        assert len(seen) == len(set(seen)) == FIXTURE_ARTICLES


def run_fixtures(out, *extra) -> int:
    return main(["run", "--config", str(FIXTURES_CONFIG), "--output", str(out), *extra])


def start_cli(out) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "pipelines", "run", "--config", str(FIXTURES_CONFIG),
                             "--output", str(out)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)


def test_a_second_claim_is_refused_until_the_first_is_released(tmp_path):
    first, second = OutputLock(str(tmp_path), "run-a"), OutputLock(str(tmp_path), "run-b")
    with first:
        with pytest.raises(Locked, match="run-a"):
            second.acquire()
        assert [p.name for p in (tmp_path / "_lock").iterdir()] == ["run-a.json"]  # the refused claim withdrew
    with second:
        assert [p.name for p in (tmp_path / "_lock").iterdir()] == ["run-b.json"]
    assert not list((tmp_path / "_lock").iterdir())


@pytest.mark.parametrize("claim, blocks", [
    ({"host": "elsewhere", "pid": 1, "age": 5}, True),  # another machine's fresh heartbeat
    ({"host": "elsewhere", "pid": 1, "age": STALE_AFTER + 60}, False),  # its heartbeat has stopped
    ({"host": "HERE", "pid": "DEAD", "age": 5}, False),  # this machine, a process that is gone
    ({"host": "HERE", "pid": "ALIVE", "age": 5}, True),  # this machine, a process that runs
])
def test_dead_claims_are_cleared_and_live_ones_block(tmp_path, claim, blocks):
    me = OutputLock(str(tmp_path), "run-new")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    pid = {"DEAD": dead.pid, "ALIVE": os.getpid()}.get(claim["pid"], claim["pid"])
    beat = datetime.now(UTC) - timedelta(seconds=claim["age"])
    (tmp_path / "_lock").mkdir()
    (tmp_path / "_lock" / "run-old.json").write_text(json.dumps(
        {"run_id": "run-old", "host": me.host if claim["host"] == "HERE" else claim["host"], "pid": pid,
         "heartbeat": beat.isoformat()}))
    if blocks:
        with pytest.raises(Locked):
            me.acquire()
    else:
        with me:
            assert not (tmp_path / "_lock" / "run-old.json").exists()


@pytest.mark.parametrize("content", [b"{not json", b"", b"[1, 2]", b'{"heartbeat": "yesterday"}', "directory"])
def test_a_claim_that_cannot_be_read_is_judged_by_its_age(tmp_path, content):
    """Garbage a disk or a hand left in ``_lock/`` blocks like a fresh claim, and is dead once as old as a
    silent one: it never locks the output for good."""
    (tmp_path / "_lock").mkdir()
    garbage = tmp_path / "_lock" / "X.json"
    if content == "directory":  # not a claim at all: it blocks nothing
        garbage.mkdir()
        (garbage / "inner.json").write_text("{}")
        with OutputLock(str(tmp_path), "run-new"):
            return
    garbage.write_bytes(content)
    with pytest.raises(Locked, match="cannot be read"):  # as young as a live claim
        OutputLock(str(tmp_path), "run-new").acquire()
    old = time.time() - STALE_AFTER - 60
    os.utime(garbage, (old, old))
    with OutputLock(str(tmp_path), "run-new"):
        assert not garbage.exists()
    assert not list((tmp_path / "_lock").iterdir())


def test_a_second_writer_exits_75_and_stores_nothing(tmp_path):
    out = tmp_path / "out"
    first = start_cli(out)
    try:
        deadline = time.monotonic() + 60
        while not (out / "_lock").is_dir() or not list((out / "_lock").iterdir()):
            assert time.monotonic() < deadline and first.poll() is None, "the first run never took the lock"
            time.sleep(0.05)
        second = subprocess.run([sys.executable, "-m", "pipelines", "run", "--config", str(FIXTURES_CONFIG),
                                 "--output", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert second.returncode == LOCKED, second.stderr
        assert len(second.stderr.strip().splitlines()) == 1 and "being written by run" in second.stderr
    finally:
        assert first.wait(timeout=120) == 0
    assert_each_article_once(out)
    assert len(list((out / "_runs").glob("*.json"))) == 1


def test_what_a_killed_run_left_uncommitted_is_invisible_and_removed(tmp_path):
    out = tmp_path / "out"
    assert run_fixtures(out) == 0
    stored = next((out / "articles").glob("*/*.parquet"))
    leftover = out / "_tmp" / "20250101T000000Z-dead00" / "articles"
    leftover.mkdir(parents=True)
    shutil.copy(stored, leftover / "half-written.parquet")  # as a run killed while writing leaves it
    assert_each_article_once(out)  # readers of the dataset never look in _tmp
    shutil.rmtree(out / "_state" / "feeds")  # the feeds are read again: every entry is seen again
    assert run_fixtures(out) == 0
    assert not list((out / "_tmp").iterdir())
    assert_each_article_once(out)


@pytest.mark.slow
def test_killed_at_any_point_then_completed_stores_each_article_once(tmp_path):
    started = time.monotonic()
    reference = start_cli(tmp_path / "reference")
    assert reference.wait(timeout=120) == 0
    full = time.monotonic() - started  # the whole run, start-up and write included
    for k, fraction in enumerate((0.3, 0.55, 0.75, 0.85, 0.92, 0.97)):
        out = tmp_path / f"killed-{k}"
        run = start_cli(out)
        time.sleep(full * fraction)
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
        run.wait(timeout=60)
        assert run_fixtures(out) == 0, f"killed at {fraction:.0%}"  # a dead run's lock does not block
        assert_each_article_once(out)
        assert not [p for p in (out / "_tmp").rglob("*") if p.is_file()]  # what the killed run left is gone
        assert not list((out / "_lock").iterdir())  # and so is its claim, and this run's
    assert run_fixtures(out) == 0  # and a further run adds nothing
    latest = json.loads(sorted((out / "_runs").glob("*.json"))[-1].read_text())
    assert latest["articles_written"] == 0 and latest["reconciled"]
    assert_each_article_once(out)
