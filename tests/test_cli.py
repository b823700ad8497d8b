"""End to end: the CLI over configs/fixtures.toml, and its contract for bad input."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import pyarrow.dataset as ds
import pytest

from pipelines.cli import main, with_defaults
from tests.conftest import FIXTURE_ARTICLES, FIXTURES_CONFIG, ROOT, WORLD, fixture_url

A = FIXTURE_ARTICLES
SEED_URLS = [fixture_url(outlet, path) for _, outlet, path, *_ in A.SEEDS]
URL = {key: fixture_url(a["outlet"], a["path"]) for key, a in A.ARTICLES.items()}
REPRINT_URL = fixture_url(A.REPRINT["outlet"], A.REPRINT["path"])


def read(out, name):
    return ds.dataset(str(out / name), format="parquet", partitioning="hive").to_table().to_pylist()


def run_cli(out, *extra):
    return main(["run", "--config", str(FIXTURES_CONFIG), "--output", str(out), *extra])


@pytest.fixture(scope="module")
def fixtures_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("fixtures") / "out"
    assert run_cli(out) == 0
    return out


def test_writes_three_hive_partitioned_datasets(fixtures_run):
    for name in ("articles", "stories", "rejects"):
        parts = list((fixtures_run / name).glob("ingest_date=*/*.parquet"))
        assert parts, name
    rows = read(fixtures_run, "articles")
    assert len(rows) == 26 and all(r["ingest_date"] for r in rows)
    assert len({r["article_id"] for r in rows}) == 26
    assert all(r["text"] and r["word_count"] > 50 and r["story_id"] for r in rows)


def test_seed_versions_share_one_story_and_hard_negatives_have_their_own(fixtures_run):
    story = {r["url"]: r["story_id"] for r in read(fixtures_run, "articles")}
    assert len({story[u] for u in SEED_URLS}) == 1
    seed_story = story[SEED_URLS[0]]
    negatives = {story[URL[k]] for k in ("llama", "eu_fine", "pentagon", "anthropic_ledger", "mistral", "surge")}
    assert len(negatives) == 6 and seed_story not in negatives
    assert story[URL["anthropic_ledger"]] == story[URL["anthropic_econ"]]  # two write-ups of one event


def test_every_script_is_extracted_segmented_and_storied(fixtures_run):
    rows = {r["url"]: r for r in read(fixtures_run, "articles")}
    world = {a["key"]: rows[f"https://{a['host']}{a['path']}"] for a in WORLD.WORLD}
    assert {r["language"] for r in world.values()} == {"es", "ru", "el", "ar", "he", "hi", "th", "zh", "ja", "ko"}
    for key, row in world.items():
        source = next(a for a in WORLD.WORLD if a["key"] == key)
        assert source["paragraphs"][0][:20] in row["text"], key  # decoded right, whatever the charset label
        assert 40 <= row["word_count"] <= 140, (key, row["word_count"])  # words, not characters or runs
    assert world["ru_metro"]["text"].startswith("Мэр Москвы")  # windows-1251 served as UTF-8: no mojibake
    a, b = WORLD.KYOTO_TAX
    assert world[a]["story_id"] == world[b]["story_id"]  # two write-ups of one event in Japanese
    assert world[WORLD.HOKKAIDO_QUAKE]["story_id"] != world[a]["story_id"]  # other Japanese news
    assert len({r["story_id"] for r in world.values()}) == len(world) - 1


def test_copies_point_at_their_originals(fixtures_run):
    rows = {r["url"]: r for r in read(fixtures_run, "articles")}
    assert rows[REPRINT_URL]["duplicate_of"] == rows[URL["pentagon"]]["article_id"]
    copy = rows[A.TRACKING_COPY["link"]]
    assert copy["duplicate_of"] == rows[SEED_URLS[0]]["article_id"]
    assert copy["story_id"] == rows[SEED_URLS[0]]["story_id"]
    originals = [r for r in rows.values() if r["duplicate_of"] is None]
    assert len(originals) == 24


def test_missing_page_and_broken_feed_are_rejects(fixtures_run):
    rejects = {(r["stage"], r["reason"]): r for r in read(fixtures_run, "rejects")}
    assert set(rejects) == {("fetch", "http_4xx"), ("feed", "bad_feed")}
    assert rejects[("fetch", "http_4xx")]["url"] == A.MISSING["link"]
    assert rejects[("feed", "bad_feed")]["url"] == "../fixtures/feeds/broken.xml"  # as the config names it


def test_stories_table_and_summary(fixtures_run):
    stories = {s["story_id"]: s for s in read(fixtures_run, "stories")}
    assert len(stories) == 18
    seed_story = next(r["story_id"] for r in read(fixtures_run, "articles") if r["url"] == SEED_URLS[0])
    s = stories[seed_story]
    assert s["article_count"] == 6 and len(s["sources"]) == 5 and s["first_seen"] <= s["last_seen"]
    (summary_file,) = (fixtures_run / "_runs").glob("*.json")
    summary = json.loads(summary_file.read_text())
    assert summary["reconciled"] and summary["entries"] == {
        "seen": 27, "articles_written": 26, "rejected": 1, "already_stored": 0}
    assert summary["duplicates"] == {"exact": 1, "near": 1}
    assert summary["stories"] == {"new": 18, "continued": 0, "index_restored": 0}
    assert summary["rejects"]["by_reason"] == {"bad_feed": 1, "http_4xx": 1}


def test_second_run_adds_no_articles_and_keeps_ids(tmp_path):
    out = tmp_path / "out"
    assert run_cli(out) == 0
    first = {(r["article_id"], r["story_id"], r["duplicate_of"]) for r in read(out, "articles")}
    assert run_cli(out) == 0
    assert {(r["article_id"], r["story_id"], r["duplicate_of"]) for r in read(out, "articles")} == first
    summaries = sorted((out / "_runs").glob("*.json"))
    second = json.loads(summaries[-1].read_text())
    # unchanged feeds cost their one read and no further work; the broken feed, failing as before, is listed
    # but not stored again: the second run adds no file to any dataset (articles, stories, rejects and the one
    assert second["feeds"] == {"polled": 7, "unchanged": 6, "failing": 1, "rejected": 0, "ill_formed": 0}
    assert second["entries"]["seen"] == 0 and second["articles_written"] == 0 and second["reconciled"]
    assert [f["url"] for f in second["failing_feeds"]] == ["../fixtures/feeds/broken.xml"]
    # stories_current file)
    assert len(list(out.glob("*/*/*.parquet"))) == 4


def test_changed_feed_skips_entries_already_stored(tmp_path):
    feed = tmp_path / "ledger.xml"
    original = (ROOT / "fixtures" / "feeds" / "ledger.xml").read_text()
    feed.write_text(original)
    config = tmp_path / "ledger.toml"
    config.write_text(f'[[feeds]]\nurl = "{feed}"\n[fetch]\nreplay = "{ROOT / "fixtures" / "replay.toml"}"\n')
    out = tmp_path / "out"
    assert main(["run", "--config", str(config), "--output", str(out)]) == 0
    feed.write_text(original.replace("<title>The Daily Ledger</title>", "<title>The Daily Ledger | News</title>"))
    assert main(["run", "--config", str(config), "--output", str(out)]) == 0
    second = json.loads(sorted((out / "_runs").glob("*.json"))[-1].read_text())
    assert second["feeds"]["unchanged"] == 0
    assert second["entries"] == {"seen": 3, "articles_written": 0, "rejected": 0, "already_stored": 3}


def test_multi_processing_gives_the_same_rows(fixtures_run, tmp_path, capfd):
    out = tmp_path / "mp"
    assert run_cli(out, "--direct_running_mode=multi_processing", "--direct_num_workers=2") == 0
    assert "INFO:apache_beam.runners.worker" not in capfd.readouterr().err  # workers log at WARNING
    key = lambda rows: sorted((r["url"], r["article_id"], r["story_id"], r["duplicate_of"]) for r in rows)  # noqa: E731
    assert key(read(out, "articles")) == key(read(fixtures_run, "articles"))
    assert len(list(out.glob("*/*/*.parquet"))) == 4  # one file per dataset (and stories_current), however many workers
    assert sorted(s["story_id"] for s in read(out, "stories")) == \
        sorted(s["story_id"] for s in read(fixtures_run, "stories"))


def test_worker_log_level_is_warning_and_prisms_error_unless_chosen():
    assert with_defaults(["--runner=DirectRunner"]) == [
        "--runner=DirectRunner", "--default_sdk_harness_log_level=WARNING", "--prism_log_level=error"]
    assert with_defaults(["--runner", "FlinkRunner", "--default_sdk_harness_log_level=DEBUG",
                          "--prism_log_level=debug"]) == [
        "--runner", "FlinkRunner", "--default_sdk_harness_log_level=DEBUG", "--prism_log_level=debug"]




def cli(*args):
    return subprocess.run([sys.executable, "-m", "pipelines", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)


@pytest.mark.parametrize("content, expected", [
    (None, "file not found"),
    ("[[feeds]\nurl = 1", "invalid TOML"),
    ('[[feeds]]\nurl = "https://a.example/f"\n[fetch]\nretry = 3\n', "fetch.retry: unknown key"),
    ('[[feeds]]\nurl = "gopher://a.example/f"\n', "feeds[0].url"),
])
def test_bad_config_exits_2_with_a_message_naming_file_and_key(tmp_path, content, expected):
    path = tmp_path / "bad.toml"
    if content is not None:
        path.write_text(content)
    result = cli("run", "--config", str(path), "--output", str(tmp_path / "out"))
    assert result.returncode == 2
    assert str(path) in result.stderr and expected in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out" / "articles").exists()


@pytest.mark.parametrize("option, says", [
    ("--runner=NoSuchRunner", "--runner=NoSuchRunner"), ("--runner=no.such.module.Runner", "--runner="),
    ("--direct_num_workers=abc", "--direct_num_workers: invalid int value"),
    ("--runner=apache_beam.runners.dask.dask_runner.DaskRunner", "refused, it loses data with Beam"),
    ("--runner=DaskRunner", "refused, it loses data with Beam"),
])
def test_a_bad_beam_option_exits_2_before_any_work(tmp_path, option, says):
    result = cli("run", "--config", str(FIXTURES_CONFIG), "--output", str(tmp_path / "out"), option)
    assert result.returncode == 2 and says in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "out").exists()


@pytest.mark.parametrize("args, says", [
    (["--runer=DataflowRunner"], "unknown option --runer=DataflowRunner (did you mean --runner?)"),
    (["--direct_num_worker", "2"], "unknown option --direct_num_worker (did you mean --direct_num_workers?)"),
    (["--pols", "3"], "unknown option --pols"),
    (["--outptu", "x"], "unknown option --outptu (did you mean --output?)"),
])
def test_an_unknown_option_exits_2_naming_the_closest_known_one(tmp_path, args, says):
    result = cli("run", "--config", str(FIXTURES_CONFIG), "--output", str(tmp_path / "out"), *args)
    assert result.returncode == 2 and says in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "out" / "articles").exists()
    stream = cli("stream", "--config", str(FIXTURES_CONFIG), "--output", str(tmp_path / "out"), "--pols", "3")
    assert stream.returncode == 2 and "(did you mean --polls?)" in stream.stderr


def test_version():
    result = cli("--version")
    assert result.returncode == 0 and result.stdout.startswith("newsbeam ") and "schema 3.0" in result.stdout


def test_a_relative_output_is_resolved_once_and_works_on_every_run(tmp_path):
    for _ in range(2):
        result = subprocess.run([sys.executable, "-m", "pipelines", "run", "--config", str(FIXTURES_CONFIG),
                                 "--output", "rel/out"], capture_output=True, text=True, cwd=tmp_path, timeout=120)
        assert result.returncode == 0, result.stderr
        assert f"-> {tmp_path / 'rel' / 'out'}" in result.stdout
    assert len(read(tmp_path / "rel" / "out", "articles")) == 26


def test_an_output_whose_dataset_is_a_file_exits_2_with_one_line(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "articles").write_text("not a directory")
    result = cli("run", "--config", str(FIXTURES_CONFIG), "--output", str(tmp_path / "out"))
    assert result.returncode == 2 and "articles is not a directory" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_the_output_does_not_depend_on_where_the_project_is_checked_out(fixtures_run, tmp_path):
    """The fixtures job in another checkout: every stored value is the same but the run's own ids and times."""
    other = tmp_path / "elsewhere" / "checkout"
    for folder in ("configs", "fixtures"):
        shutil.copytree(ROOT / folder, other / folder)
    out = tmp_path / "out"
    assert main(["run", "--config", str(other / "configs" / "fixtures.toml"), "--output", str(out)]) == 0
    own = {"run_id", "fetched_at", "rejected_at", "ingest_date", "first_seen", "last_seen"}
    for name in ("articles", "stories", "rejects"):
        key = lambda rows: sorted(json.dumps({k: str(v) for k, v in r.items() if k not in own}, sort_keys=True)  # noqa: E731
                                  for r in rows)
        assert key(read(out, name)) == key(read(fixtures_run, name)), name


def test_unusable_output_exits_2(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    result = cli("run", "--config", str(FIXTURES_CONFIG), "--output", str(blocker / "out"))
    assert result.returncode == 2 and "not writable" in result.stderr and "Traceback" not in result.stderr


def test_help_documents_the_run_command():
    result = cli("run", "--help")
    assert result.returncode == 0 and "--config" in result.stdout and "--output" in result.stdout


@pytest.mark.parametrize("interrupted", [False, True, "damaged"])
def test_story_continues_across_runs(tmp_path, interrupted):
    """``interrupted``: the first run dies after writing its articles, before saving the story index; or
    (``damaged``) its state files are damaged afterwards."""
    fixtures = ROOT / "fixtures"

    def config(name, feeds):
        path = tmp_path / f"{name}.toml"
        tables = "".join(f'[[feeds]]\nurl = "{fixtures / "feeds" / f}"\n' for f in feeds)
        path.write_text(f'{tables}[fetch]\nreplay = "{fixtures / "replay.toml"}"\n')
        return path

    out = tmp_path / "out"
    first, second = config("first", ["ledger.xml", "bytebeat.xml"]), config("second", ["techwire.xml", "markets.xml",
                                                                                       "econ.xml"])
    assert main(["run", "--config", str(first), "--output", str(out)]) == 0
    stored_first = len(read(out, "articles"))
    if interrupted == "damaged":
        for snapshot in (out / "_state").glob("*/snapshot-*.json.gz"):
            snapshot.write_bytes(snapshot.read_bytes()[:100])  # cut short
    elif interrupted:
        shutil.rmtree(out / "_state" / "stories")
    assert main(["run", "--config", str(second), "--output", str(out)]) == 0
    story = {r["url"]: r["story_id"] for r in read(out, "articles")}
    assert len({story[u] for u in SEED_URLS}) == 1
    latest = json.loads(sorted((out / "_runs").glob("*.json"))[-1].read_text())
    assert latest["stories"]["continued"] >= 1
    assert latest["stories"]["index_restored"] == (stored_first if interrupted else 0)
    assert latest["reconciled"] is True
    assert (latest["state"]["snapshots_unreadable"] >= 2) == (interrupted == "damaged")  # stories', feeds'
    rows = [s for s in read(out, "stories") if s["story_id"] == story[SEED_URLS[0]]]
    assert sorted(s["article_count"] for s in rows) == [3, 6]  # 2 originals + the copy, then all five outlets


def test_a_local_run_stays_offline_and_leaves_tmpdir_as_it_found_it(tmp_path):
    tmpdir = tmp_path / "tmpdir"
    tmpdir.mkdir()
    result = subprocess.run([sys.executable, "-m", "pipelines", "run", "--config", str(FIXTURES_CONFIG), "--output",
                             str(tmp_path / "out")], capture_output=True, text=True, cwd=ROOT, timeout=300,
                            env={**os.environ, "TMPDIR": str(tmpdir)})
    assert result.returncode == 0, result.stderr
    assert "prism" not in (result.stdout + result.stderr).lower()  # no attempt to download a runner
    assert list(tmpdir.iterdir()) == []


@pytest.mark.slow
def test_the_portable_path_with_two_worker_processes_gives_the_same_output(fixtures_run, tmp_path):
    """What Flink, Spark and Dataflow use: the pipeline proto, the Fn API, pickling, separate SDK worker
    processes (Beam's external worker pool). Checked against the in-process run."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    pool = subprocess.Popen([sys.executable, "-m", "apache_beam.runners.worker.worker_pool_main",
                             f"--service_port={port}"], cwd=ROOT, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:
            with socket.socket() as client:
                if client.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert time.monotonic() < deadline and pool.poll() is None, "the worker pool did not start"
            time.sleep(0.1)
        out = tmp_path / "portable"
        assert run_cli(out, "--runner=PortableRunner", "--job_endpoint=embed", "--environment_type=EXTERNAL",
                       f"--environment_config=localhost:{port}", "--sdk_worker_parallelism=2") == 0
    finally:
        os.killpg(pool.pid, signal.SIGTERM)
        pool.wait(timeout=30)

    def rows(where, name, columns):
        return sorted(tuple(str(r[c]) for c in columns) for r in read(where, name))

    for name, columns in [("articles", ["url", "article_id", "story_id", "duplicate_of", "word_count"]),
                          ("stories", ["story_id", "article_count", "sources"]),
                          ("rejects", ["url", "stage", "reason"])]:
        assert rows(out, name, columns) == rows(fixtures_run, name, columns), name
    (summary,) = [json.loads(p.read_text()) for p in (out / "_runs").glob("*.json")]
    assert summary["reconciled"] and summary["entries"]["articles_written"] == 26
