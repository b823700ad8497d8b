"""stories_current/: each story once, as the latest run left it."""

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import apache_beam as beam
import pyarrow.parquet as pq
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

import pipelines.current
from pipelines.cli import main, run_batch
from pipelines.current import WriteCurrent, current_file, merged, read_current
from pipelines.records import Run, Story
from tests.conftest import FIXTURES_CONFIG, read_dataset

T0 = datetime(2025, 6, 12, tzinfo=UTC)


def story(story_id: str, count: int = 1) -> Story:
    return Story(story_id, f"title {story_id}", f"rep-{story_id}", count, ("A",), T0, T0, outlet_count=1)


def test_merged_replaces_changed_stories_and_keeps_the_rest():
    previous = [{"story_id": "b", "n": 1}, {"story_id": "a", "n": 1}]
    assert merged(previous, [{"story_id": "b", "n": 2}, {"story_id": "c", "n": 1}]) == [
        {"story_id": "a", "n": 1}, {"story_id": "b", "n": 2}, {"story_id": "c", "n": 1}]


def test_write_current_replaces_each_partition_file_after_the_datasets(tmp_path):
    out = str(tmp_path / "out")
    first, second = (Run(f"2025061{k}T000000Z-r{k}", T0 + timedelta(days=k)) for k in (2, 3))
    for run, stories in ((first, [("2025-06-12", story("a")), ("2025-06-12", story("b"))]),
                         (second, [("2025-06-12", story("b", 2)), ("2025-06-13", story("c"))])):
        with TestPipeline() as p:
            after = p | "Files" >> beam.Create(["written.parquet"])
            done = p | beam.Create(stories) | WriteCurrent(out, run, after)
            assert_that(done, equal_to(sorted({current_file(out, day) for day, _ in stories})))
    rows = {r["story_id"]: r for day in ("2025-06-12", "2025-06-13") for r in read_current(current_file(out, day))}
    assert {k: (r["article_count"], r["run_id"]) for k, r in rows.items()} == {
        "a": (1, first.run_id), "b": (2, second.run_id), "c": (1, second.run_id)}
    assert sorted(p.name for p in (tmp_path / "out" / "stories_current").glob("*/*")) == ["stories.parquet"] * 2
    assert not list((tmp_path / "out" / "_tmp").glob("*/stories_current/*"))  # renamed, not copied


def current_rows(out) -> dict[str, dict]:
    rows = read_dataset(out, "stories_current").to_pylist()
    assert len(rows) == len({r["story_id"] for r in rows}), "a story twice"
    return {r["story_id"]: r for r in rows}


def test_a_story_continued_by_a_later_run_stays_in_its_first_partition(fixtures_config):
    out = fixtures_config.output.path
    day1, day2 = datetime.now(UTC) - timedelta(days=1), datetime.now(UTC)
    run_batch(replace(fixtures_config, feeds=fixtures_config.feeds[:2]), [], Run(f"{day1:%Y%m%dT%H%M%SZ}-one", day1))
    run_batch(fixtures_config, [], Run(f"{day2:%Y%m%dT%H%M%SZ}-two", day2))
    current = current_rows(out)
    history = read_dataset(out, "stories").to_pylist()
    latest = {}
    for row in sorted(history, key=lambda r: r["run_id"]):
        latest[row["story_id"]] = row
    assert set(current) == set(latest)
    for story_id, row in current.items():  # the current row is the history's latest
        assert {k: v for k, v in row.items() if k != "ingest_date"} == \
            {k: v for k, v in latest[story_id].items() if k != "ingest_date"}
    seeds = max(current.values(), key=lambda r: r["outlet_count"])
    assert seeds["outlet_count"] == 5 and seeds["run_id"].endswith("-two")
    assert str(seeds["ingest_date"]) == day1.date().isoformat()  # created by the first run


def test_a_run_killed_before_the_renames_is_made_good_by_the_next(fixtures_config, monkeypatch, tmp_path):
    clean = replace(fixtures_config, output=replace(fixtures_config.output, path=str(tmp_path / "clean")))
    run_batch(clean, [])
    out = fixtures_config.output.path

    def killed(*_):
        raise OSError("killed")

    monkeypatch.setattr(pipelines.current, "_commit", killed)
    with pytest.raises(Exception, match="killed"):
        run_batch(fixtures_config, [])
    assert read_dataset(out, "articles").num_rows == 26 and not read_dataset(out, "stories_current").num_rows
    monkeypatch.undo()
    run_batch(fixtures_config, [])  # stores nothing new, restores the killed run's articles to the index
    assert read_dataset(out, "articles").num_rows == 26
    strip = lambda rows: {k: {c: v for c, v in r.items() if c not in ("run_id", "ingest_date")}  # noqa: E731
                          for k, r in rows.items()}
    assert strip(current_rows(out)) == strip(current_rows(clean.output.path))


def test_files_are_one_schema(fixtures_config):
    run_batch(fixtures_config, [])
    from schemas import STORIES_CURRENT

    for path in pipelines.current.FileSystems.match([f"{fixtures_config.output.path}/stories_current/*/*"])[0] \
            .metadata_list:
        assert pq.read_schema(path.path).names == STORIES_CURRENT.names


@pytest.mark.parametrize("next_step", ["run", "compact"])
def test_a_damaged_file_is_set_aside_and_made_again_from_the_history(fixtures_config, next_step, tmp_path):
    out = fixtures_config.output.path
    day1, day2 = datetime.now(UTC) - timedelta(days=1), datetime.now(UTC)
    run_batch(replace(fixtures_config, feeds=fixtures_config.feeds[:2]), [], Run(f"{day1:%Y%m%dT%H%M%SZ}-one", day1))
    run_batch(fixtures_config, [], Run(f"{day2:%Y%m%dT%H%M%SZ}-two", day2))
    before = current_rows(out)
    damaged = sorted(Path(out, "stories_current").glob("*/*.parquet"))[0]
    with open(damaged, "r+b") as f:  # cut short, as a full disk would leave it
        f.truncate(100)
    if next_step == "run":
        summary = run_batch(fixtures_config, [])
        assert summary["datasets"]["files_set_aside"]
        assert summary["datasets"]["stories_current_rebuilt"] == len(before)
    else:
        assert main(["compact", "--config", str(FIXTURES_CONFIG), "--output", out]) == 0
    assert current_rows(out) == before  # every story, in its first run's partition, as its latest row
