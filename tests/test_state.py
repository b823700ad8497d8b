"""State snapshots: written, then committed; only a committed snapshot is in force, and a damaged one is
passed over for the newest older one that reads."""

import gzip

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines import state

A, B, C = "20250101T000000Z-a", "20250102T000000Z-b", "20250103T000000Z-c"


def doc(lines):
    return next(lines)


def save(state_dir: str, run_id: str, snapshot: bytes) -> str:
    """Written and committed, as a run that completes saves it."""
    return state.commit(state_dir, state.write(state_dir, run_id, snapshot))


def test_a_written_snapshot_takes_effect_only_when_committed(tmp_path):
    d = str(tmp_path)
    assert state.load(d, doc) == (None, [])
    first = state.write(d, A, state.encode({"n": 1}))
    assert state.load(d, doc) == (None, [])  # a run that dies before committing leaves no state in force
    state.commit(d, first)
    state.write(d, B, state.encode({"n": 2}))
    assert state.load(d, doc) == ({"n": 1}, [])
    state.commit(d, state.write_lines(d, C, {"n": 3}, iter([("x", 1)])))
    assert state.load(d, list) == ([{"n": 3}, {"x": 1}], [])


def test_commit_keeps_the_latest_snapshots_and_always_the_one_in_force(tmp_path):
    d = str(tmp_path)
    for run_id in (A, B, C):
        save(d, run_id, state.encode(run_id))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["CURRENT"] + [f"snapshot-{r}.json.gz" for r in (A, B, C)]
    # runs that wrote and died leave newer files than the one committed next (a clock set back, say)
    for run_id in ("20250105T000000Z-x", "20250106T000000Z-y", "20250107T000000Z-z"):
        state.write(d, run_id, state.encode(run_id))
    state.commit(d, state.write(d, "20250104T000000Z-d", state.encode("d")))
    assert state.load(d, doc) == ("d", [])
    assert f"snapshot-{A}.json.gz" not in {p.name for p in tmp_path.iterdir()}


@pytest.mark.parametrize("damage", ["cut short", "not gzip", "not json", "removed", "unparseable"])
def test_a_damaged_snapshot_in_force_is_passed_over_for_the_newest_older_one(tmp_path, damage):
    d = str(tmp_path)
    for run_id in (A, B):
        save(d, run_id, state.encode({"run": run_id}))
    save(d, C, state.encode({"run": C} if damage != "unparseable" else ["not", "a", "dict"]))
    path = tmp_path / f"snapshot-{C}.json.gz"
    data = path.read_bytes()
    if damage == "cut short":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "not gzip":
        path.write_bytes(b"\x00" * 40)
    elif damage == "not json":
        path.write_bytes(gzip.compress(b"{'run': oops"))
    elif damage == "removed":
        path.unlink()
    value, unreadable = state.load(d, lambda lines: next(lines)["run"])
    assert value == B
    assert len(unreadable) == 1 and f"snapshot-{C}.json.gz" in unreadable[0]


def test_every_snapshot_damaged_is_no_state_with_each_named(tmp_path):
    d = str(tmp_path)
    for run_id in (A, B):
        save(d, run_id, state.encode(run_id))
        (tmp_path / f"snapshot-{run_id}.json.gz").write_bytes(b"garbage")
    value, unreadable = state.load(d, doc)
    assert value is None and len(unreadable) == 2


@pytest.mark.parametrize("pointer", [b"\xff\xfe", b"not a name", b"", b"../elsewhere/snapshot-x.json.gz"])
def test_a_damaged_pointer_falls_back_to_the_newest_snapshot_that_reads(tmp_path, pointer):
    d = str(tmp_path)
    for run_id in (A, B):
        save(d, run_id, state.encode(run_id))
    (tmp_path / "CURRENT").write_bytes(pointer)
    value, unreadable = state.load(d, doc)
    assert value == B and len(unreadable) == 1 and "CURRENT" in unreadable[0]


def test_a_snapshot_of_a_newer_format_is_refused_not_passed_over(tmp_path):
    d = str(tmp_path)
    save(d, A, state.encode("old"))
    save(d, B, state.encode("new"))

    def parse(lines):
        if next(lines) == "new":
            raise state.UnsupportedFormat("format 99")
        return "old"

    with pytest.raises(state.UnsupportedFormat):
        state.load(d, parse)


@settings(max_examples=40, deadline=None)
@given(st.binary(max_size=200))
def test_whatever_bytes_the_snapshot_in_force_holds_loading_never_raises(tmp_path_factory, junk):
    d = tmp_path_factory.mktemp("state")
    save(str(d), A, state.encode({"ok": True}))
    save(str(d), B, state.encode({"ok": True}))
    (d / f"snapshot-{B}.json.gz").write_bytes(junk)
    value, unreadable = state.load(str(d), lambda lines: dict(next(lines)))
    assert value == {"ok": True}
