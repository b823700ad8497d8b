"""State snapshots: written, then committed; only a committed snapshot is in force."""

from pipelines import state


def test_a_written_snapshot_takes_effect_only_when_committed(tmp_path):
    d = str(tmp_path)
    assert state.load(d) is None
    first = state.write(d, "20250101T000000Z-a", state.encode({"n": 1}))
    assert state.load(d) is None  # a run that dies before committing leaves no state in force
    state.commit(d, first)
    state.write(d, "20250102T000000Z-b", state.encode({"n": 2}))
    assert state.load(d) == {"n": 1}
    state.commit(d, state.write_lines(d, "20250103T000000Z-c", {"n": 3}, iter([("x", 1)])))
    assert list(state.load_lines(d)) == [{"n": 3}, {"x": 1}]


def test_commit_keeps_the_latest_snapshots_and_always_the_one_in_force(tmp_path):
    d = str(tmp_path)
    for run_id in ("20250101T000000Z-a", "20250102T000000Z-b", "20250103T000000Z-c"):
        state.save(d, run_id, state.encode(run_id))
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "CURRENT", "snapshot-20250101T000000Z-a.json.gz", "snapshot-20250102T000000Z-b.json.gz",
        "snapshot-20250103T000000Z-c.json.gz"]
    # runs that wrote and died leave newer files than the one committed next (a clock set back, say)
    for run_id in ("20250105T000000Z-x", "20250106T000000Z-y", "20250107T000000Z-z"):
        state.write(d, run_id, state.encode(run_id))
    state.commit(d, state.write(d, "20250104T000000Z-d", state.encode("d")))
    assert state.load(d) == "d"
    assert "snapshot-20250104T000000Z-d.json.gz" in {p.name for p in tmp_path.iterdir()}
    assert "snapshot-20250101T000000Z-a.json.gz" not in {p.name for p in tmp_path.iterdir()}
