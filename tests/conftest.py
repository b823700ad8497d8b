"""Shared test helpers. No test touches the internet: fixtures are replayed or served on 127.0.0.1."""

from __future__ import annotations

import importlib.util
import os
import sys
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.test_pipeline import TestPipeline
from hypothesis import settings

from pipelines import runners
from pipelines.config import Config, OutputConfig, load_config
from pipelines.records import FeedEntry, Page, Run
from schemas import ALL_DATASETS as DATASETS

# CI explores the same examples on every run (a failure there must be reproducible, not luck); a developer's
# runs draw new ones each time.
settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI"):
    settings.load_profile("ci")

# TestPipeline's default, DirectRunner, first tries to download the Prism runner from the internet; the tests
# run on the runner the CLI uses by default.
TestPipeline.pytest_test_pipeline_options = "--runner=FnApiRunner"

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"
FIXTURES_CONFIG = ROOT / "configs" / "fixtures.toml"

PRISM = runners.prism_path()
needs_prism = pytest.mark.skipif(not PRISM.is_file(),
                                 reason=f"Prism is not installed at {PRISM}: run newsbeam install-runners")


def streaming_on_prism() -> PipelineOptions:
    """A TestPipeline's options for an unbounded pipeline (TestStream) on Prism."""
    return PipelineOptions(["--runner=PrismRunner", f"--prism_location={PRISM}", "--streaming",
                            "--prism_log_level=error"])


def _load_fixture_module(name: str):
    spec = importlib.util.spec_from_file_location(f"fixture_{name}", FIXTURES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[f"fixture_{name}"] = module
    spec.loader.exec_module(module)
    return module


FIXTURE_ARTICLES = _load_fixture_module("articles")
WORLD = _load_fixture_module("world")  # the multilingual articles


def fixture_url(outlet: str, path: str) -> str:
    return f"https://{FIXTURE_ARTICLES.OUTLETS[outlet]['host']}{path}"


@pytest.fixture
def fixtures_config(tmp_path) -> Config:
    config = load_config(FIXTURES_CONFIG)
    return replace(config, output=OutputConfig(path=str(tmp_path / "out")))


@pytest.fixture
def run() -> Run:
    return Run(run_id="20250614T000000Z-test01", started_at=datetime(2025, 6, 14, tzinfo=UTC))


def make_entry(link: str = "https://news.example/a", **kw) -> FeedEntry:
    return FeedEntry(feed_url=kw.pop("feed_url", "https://news.example/feed.xml"), link=link, **kw)


def page_for(path: Path, link: str, **entry_kw) -> Page:
    entry = make_entry(link, **entry_kw)
    return Page(entry, link, 200, "text/html; charset=utf-8", path.read_bytes(),
                datetime(2025, 6, 14, tzinfo=UTC))


def read_dataset(out, name: str, columns: list[str] | None = None) -> pa.Table:
    """A dataset's rows as pyarrow's dataset reader sees them; empty when a run stored none (no file)."""
    if not Path(out, name).exists():
        schema = DATASETS[name]
        return schema.empty_table().select(columns) if columns else schema.empty_table()
    return ds.dataset(str(Path(out, name)), format="parquet", partitioning="hive").to_table(columns=columns)
