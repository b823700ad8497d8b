"""Every public test feed in ../shared/eval/feeds (ill-formed, oddly encoded, real-world) through the CLI:
each ends with entries or a reject row naming it. Slow; skipped when ../shared is absent."""

import json

import pyarrow.dataset as ds
import pytest

from pipelines.cli import main
from tests.conftest import ROOT

FEEDS = ROOT.parent / "shared" / "eval" / "feeds"


@pytest.mark.slow
@pytest.mark.skipif(not FEEDS.is_dir(), reason="../shared/eval/feeds not present")
def test_every_eval_feed_yields_entries_or_a_reject(tmp_path):
    files = sorted(p for p in FEEDS.rglob("*") if p.is_file() and p.name != "LICENSE")
    assert len(files) > 100
    (tmp_path / "replay.toml").write_text("")  # no pages: every article link answers 404, no network
    config = tmp_path / "feeds.toml"
    config.write_text("".join(f"[[feeds]]\nurl = {json.dumps(str(p))}\n" for p in files)
                      + '[fetch]\nreplay = "replay.toml"\n')
    out = tmp_path / "out"
    assert main(["run", "--config", str(config), "--output", str(out)]) == 0

    rejects = ds.dataset(str(out / "rejects"), format="parquet", partitioning="hive").to_table().to_pylist()
    feed_rejects = {r["url"] for r in rejects if r["feed_url"] is None}
    with_entries = {r["feed_url"] for r in rejects if r["feed_url"] is not None}
    (summary,) = [json.loads(p.read_text()) for p in (out / "_runs").glob("*.json")]
    assert summary["feeds"]["polled"] == len(files) and summary["reconciled"]
    silent = [str(p.relative_to(FEEDS)) for p in files if str(p) not in feed_rejects | with_entries]
    assert silent == [], f"feeds with neither entries nor a reject: {silent}"
