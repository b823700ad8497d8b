"""A hostile world, second round: transient failures retried, state that waits for every write, garbage and
patterns in output paths, failures told in one line, damaged data files, canonical links that claim another
article's identity. Servers on 127.0.0.1; runs through the CLI as a user would make them."""

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from functools import partial
from pathlib import Path
from xml.sax.saxutils import escape

import pytest

from benchmarks.localserver import NOT_FOUND, serve
from pipelines.cli import main
from pipelines.known import ATTEMPTS
from tests.conftest import FIXTURES, FIXTURES_CONFIG, ROOT, read_dataset

PAGE = (FIXTURES / "web" / "dailyledger.example" / "tech" / "2025" / "06" / "13" /
        "meta-scale-ai-investment.html").read_bytes()


def article_page(title: str, canonical: str | None = None) -> bytes:
    link = f'<link rel="canonical" href="{escape(canonical)}">' if canonical else ""
    body = " ".join(f"{title} is reported in detail in this sentence number {k}." for k in range(12))
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{title}</title>{link}</head>"
            f"<body><article><h1>{title}</h1><p>{body}</p></article></body></html>").encode()


class Site:
    """A feed of ``paths`` on 127.0.0.1 whose pages answer from ``pages`` (a body, or a list of statuses and
    bodies answered in turn, the last one repeated)."""

    def __init__(self, paths: list[str], pages: dict[str, object]):
        self.paths, self.pages, self.hits = paths, pages, Counter()
        self.server, self.base = serve(self.answer)

    def answer(self, path: str):
        self.hits[path] += 1
        if path == "/feed.xml":
            items = "".join(f"<item><title>{p}</title><link>{self.base}{p}</link></item>" for p in self.paths)
            return 200, "application/rss+xml", (f'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title>'
                                                f"<link>{self.base}/</link>{items}</channel></rss>").encode()
        found = self.pages.get(path)
        if isinstance(found, list):
            status, body = found[min(self.hits[path], len(found)) - 1]
            return status, "text/html", body
        return (200, "text/html; charset=utf-8", found) if found is not None else NOT_FOUND

    def config(self, tmp_path: Path, output: str | None = None) -> str:
        path = tmp_path / "site.toml"
        path.write_text(f'[[feeds]]\nurl = "{self.base}/feed.xml"\n[fetch]\nallow_private_addresses = true\n'
                        f'host_delay = 0.0\nretries = 0\ntimeout = 10.0\nobey_robots = false\n'
                        f'[output]\npath = "{output or tmp_path / "out"}"\n')
        return str(path)


@pytest.fixture
def site_of():
    sites = []

    def make(paths, pages):
        sites.append(Site(paths, pages))
        return sites[-1]
    yield make
    for s in sites:
        s.server.shutdown()


def last_summary(out: Path) -> dict:
    return json.loads(sorted((out / "_runs").glob("*.json"), key=lambda p: p.stat().st_mtime)[-1].read_text())


def run(config: str, *extra: str) -> int:
    return main(["run", "--config", config, *extra])


def test_a_transient_failure_is_retried_by_the_next_runs_whatever_the_feed_validators_say(tmp_path, site_of):
    site = site_of(["/flaky", "/down", "/gone"], {
        "/flaky": [(503, b"busy"), (200, article_page("Flaky"))],  # 503 once, then the page
        "/down": [(503, b"down")],  # 503 for good
    })
    config = site.config(tmp_path)
    out = tmp_path / "out"
    assert run(config) == 0
    assert last_summary(out)["rejects"]["by_reason"] == {"http_5xx": 2, "http_4xx": 1}
    assert run(config) == 0  # the feed is unchanged, but the flaky page and the down page are tried again
    second = last_summary(out)
    assert second["feeds"]["unchanged"] == 1 and second["entries"] == {
        "seen": 2, "articles_written": 1, "rejected": 1, "already_stored": 0}
    assert [r["url"] for r in read_dataset(out, "articles").to_pylist()] == [f"{site.base}/flaky"]
    for _ in range(ATTEMPTS):  # the down page: tried by ATTEMPTS runs in all, then settled like a 404
        assert run(config) == 0
    assert site.hits["/down"] == ATTEMPTS and site.hits["/gone"] == 1 and site.hits["/flaky"] == 2
    final = last_summary(out)
    assert final["entries"] == {"seen": 0, "articles_written": 0, "rejected": 0, "already_stored": 0}
    down = [r for r in read_dataset(out, "rejects").to_pylist() if r["url"].endswith("/down")]
    assert len(down) == ATTEMPTS and all(r["reason"] == "http_5xx" for r in down)


@pytest.mark.skipif(os.stat("/dev/shm").st_dev == os.stat(tempfile.gettempdir()).st_dev
                    if os.path.isdir("/dev/shm") else True, reason="needs a second filesystem at /dev/shm")
def test_state_is_committed_only_after_every_dataset_is_written(tmp_path, site_of, capsys):
    """``rejects/`` on another filesystem: its files cannot be renamed into it, the run fails, and neither the
    feed states nor the story index move on, so the next run accounts for every entry."""
    site = site_of(["/a", "/gone"], {"/a": article_page("A story")})
    config = site.config(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    elsewhere = Path(tempfile.mkdtemp(dir="/dev/shm"))
    try:
        (out / "rejects").symlink_to(elsewhere)
        assert run(config) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "failed" in err[0] and "Invalid cross-device link" in err[0], err
        assert not (out / "_state" / "feeds" / "CURRENT").exists()
        assert not (out / "_state" / "stories" / "CURRENT").exists()
        (out / "rejects").unlink()
        assert run(config) == 0
    finally:
        shutil.rmtree(elsewhere, ignore_errors=True)
    summary = last_summary(out)
    stored = [r["url"] for r in read_dataset(out, "articles").to_pylist()]
    rejected = [r["url"] for r in read_dataset(out, "rejects").to_pylist() if r["feed_url"]]
    assert sorted(stored + rejected) == [f"{site.base}/a", f"{site.base}/gone"] and summary["reconciled"]


def test_glob_characters_in_the_output_are_a_path_not_a_pattern(tmp_path, site_of):
    site = site_of(["/a"], {"/a": article_page("A story")})
    neighbour = site_of(["/b"], {"/b": article_page("Another story")})
    g = tmp_path / "g"
    assert run(neighbour.config(tmp_path, str(g / "o_x"))) == 0
    for output in ("o_*", "o_[x]", "o_?"):
        assert run(site.config(tmp_path, str(g / output))) == 0
        assert run(site.config(tmp_path, str(g / output))) == 0  # and again: nothing twice
        assert [r["url"] for r in read_dataset(g / output, "articles").to_pylist()] == [f"{site.base}/a"], output
        assert not list((g / output / "_runs").glob(".write-probe*"))
        assert not list((g / output / "_tmp").iterdir())
    assert [r["url"] for r in read_dataset(g / "o_x", "articles").to_pylist()] == [f"{neighbour.base}/b"]


def cli(out: Path, *args: str, command: str = "run", **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "pipelines", command, "--config", str(FIXTURES_CONFIG),
                             "--output", str(out), *args], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def limit_file_size(size: int) -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))  # writes past it fail: EFBIG, as a full disk does


def test_a_write_failure_is_one_line_naming_what_failed_and_what_the_next_run_does(tmp_path):
    out = tmp_path / "out"
    failed = cli(out, preexec_fn=partial(limit_file_size, 20_000))
    _, err = failed.communicate(timeout=180)
    assert failed.returncode == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "File too large" in lines[0] and "the next run" in lines[0], err[-3000:]
    log = Path(lines[0].rsplit("(traceback: ", 1)[1].rstrip(")"))
    assert "Traceback" in log.read_text()
    debug = cli(out, "--debug", preexec_fn=partial(limit_file_size, 20_000))
    _, err = debug.communicate(timeout=180)
    assert debug.returncode == 1 and "Traceback (most recent call last)" in err
    assert main(["run", "--config", str(FIXTURES_CONFIG), "--output", str(out)]) == 0  # and the next run does
    ids = read_dataset(out, "articles", ["article_id"]).column("article_id").to_pylist()
    assert len(ids) == len(set(ids)) == 26
    old = out / "articles" / "ingest_date=2020-01-01"  # a partition for compaction to rewrite
    old.mkdir()
    for k in range(2):
        shutil.copy(next((out / "articles").glob("ingest_date=2*/*.parquet")), old / f"r{k}-00000-of-00001.parquet")
    for command, args, where in (("stream", ("--polls", "1"), tmp_path / "streamed"), ("compact", (), out)):
        failing = cli(where, *args, command=command, preexec_fn=partial(limit_file_size, 20_000))
        _, err = failing.communicate(timeout=180)
        lines = err.strip().splitlines()
        assert failing.returncode == 1 and len(lines) == 1 and "File too large" in lines[0], (command, err[-3000:])
        assert lines[0].startswith(f"newsbeam: {command} ") and "the next" in lines[0]


def test_a_signal_stops_a_batch_run_with_one_line_and_the_next_run_completes(tmp_path):
    out = tmp_path / "out"
    first = cli(out)
    deadline = time.monotonic() + 60
    while not (out / "_lock").is_dir() or not list((out / "_lock").iterdir()):
        assert time.monotonic() < deadline and first.poll() is None
        time.sleep(0.02)
    time.sleep(0.5)  # into the pipeline
    first.send_signal(signal.SIGINT)
    _, err = first.communicate(timeout=60)
    if first.returncode == 0:
        pytest.skip("the run finished before the signal")
    assert first.returncode == 130, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "stopped by SIGINT" in lines[0] and "the next run" in lines[0], err[-3000:]
    assert not list((out / "_lock").iterdir())
    assert main(["run", "--config", str(FIXTURES_CONFIG), "--output", str(out)]) == 0
    ids = read_dataset(out, "articles", ["article_id"]).column("article_id").to_pylist()
    assert len(ids) == len(set(ids)) == 26


def test_a_damaged_data_file_is_set_aside_and_its_rows_are_fetched_again(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["run", "--config", str(FIXTURES_CONFIG), "--output", str(out)]) == 0
    before = {r["article_id"]: r["story_id"] for r in read_dataset(out, "articles").to_pylist()}
    (damaged,) = list((out / "articles").glob("*/*.parquet"))
    damaged.write_bytes(damaged.read_bytes()[: damaged.stat().st_size // 2])  # cut short
    for _ in range(2):  # the run after it, and every later one, completes
        assert main(["run", "--config", str(FIXTURES_CONFIG), "--output", str(out)]) == 0
    first = json.loads(sorted((out / "_runs").glob("*.json"))[1].read_text())
    assert first["datasets"]["files_set_aside"] == [str(damaged)] and first["articles_written"] == 26
    assert "damaged file(s) set aside" in capsys.readouterr().out
    assert list((out / "_damaged").rglob(damaged.name))
    after = {r["article_id"]: r["story_id"] for r in read_dataset(out, "articles").to_pylist()}
    assert after == before  # every row back, in its story


def test_a_canonical_link_cannot_take_another_articles_identity(tmp_path, site_of):
    site = site_of(["/canon/other", "/elsewhere", "/bad"], {})
    b0 = f"{site.base}/a/b0"
    site.pages.update({
        "/canon/other": article_page("Other story", canonical=b0),  # claims b0's identity on its own site
        "/elsewhere": article_page("Third story", canonical="https://another-outlet.example/a/b0"),
        "/bad": article_page("Fourth story", canonical="http://exa mple.com/%20x"),
        "/a/b0": article_page("The real b0"),
    })
    config = site.config(tmp_path)
    out = tmp_path / "out"
    assert run(config) == 0
    site.paths.append("/a/b0")  # b0's own entry arrives later
    assert run(config) == 0
    rows = {r["url"].removeprefix(site.base): r for r in read_dataset(out, "articles").to_pylist()}
    assert set(rows) == {"/canon/other", "/elsewhere", "/bad", "/a/b0"}
    assert rows["/a/b0"]["title"] == "The real b0" and rows["/a/b0"]["canonical_url"] == b0
    assert rows["/a/b0"]["canonical_ignored"] is None
    assert len({r["article_id"] for r in rows.values()}) == 4
    for path, why in (("/canon/other", "another page of the site"), ("/elsewhere", "on another site"),
                      ("/bad", "not a valid URL")):
        assert rows[path]["canonical_url"] == f"{site.base}{path}" and why in rows[path]["canonical_ignored"]
