"""Figures and disputes, measured against hand labels of stories nobody here wrote.

    python benchmarks/figures_eval.py [--gold ../shared/eval/stories/dev.jsonl] [--show]

``benchmarks/data/figures_labels.json`` labels 30 stories of the dev set that several outlets reported (the
seeds, the ten NewsWCL50 events, 19 ECB+ events): every figure one article of each states, and the quantities
the story's articles disagree on (its "about" says what counts). This prints:

- figures: precision and recall of ``pipelines.figures`` on the labelled articles, by kind and overall
  (a figure matches a label of the same kind, unit and value, each label once);
- disputes: the stories' articles go through ``pipelines.stories.agreement`` (each NewsWCL50 or seed outlet one
  outlet; each ECB+ article its own, as the set does not name outlets); a flagged dispute matches a labelled
  one when two of its values are two of the label's. Precision over the flagged disputes, recall over the
  labelled ones, overall and for the kinds newsbeam disputes (money, percent);
- the same on the stories newsbeam forms itself (the stories stage's assignment of the whole dev set, as
  ``stories_eval.py --direct`` runs it), where a story may hold two events: how many disputes are flagged there,
  and how many of them are labelled ones;
- with ``--show``, every flagged dispute of the whole dev set, labelled or not, to read.

The dev texts were detokenised from token lists ("$27. 5 million", "re - election"); those spaces are removed
before reading, as a page would print them. Exits 0 with a message when the shared data is not there.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections import Counter, defaultdict
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared"
LABELS = ROOT / "benchmarks" / "data" / "figures_labels.json"

from pipelines.figures import Figure, figures  # noqa: E402
from pipelines.stories.agreement import DISPUTED_KINDS, agreement  # noqa: E402


def retokenised(text: str) -> str:
    """The dev set's detokenisation spaces removed: "$27. 5 million" -> "$27.5 million", "re - election" ->
    "re-election", "8: 06AM" -> "8:06AM"."""
    text = re.sub(r"(\d), (\d{3})(?!\d)", r"\1,\2", text)  # a thousands separator, not "May 3, 2013"
    text = re.sub(r"(\d)([.:]) (\d)", r"\1\2\3", text)
    return re.sub(r"(?<=\w) - (?=\w)", "-", text)


def article_text(row: dict) -> str:
    return retokenised("\n\n".join(p for p in (row.get("title"), row["text"]) if p))


def reference(row: dict) -> date | None:
    try:
        return date.fromisoformat(row["published"][:10]) if row.get("published") else None
    except ValueError:
        return None


def key(kind: str, value, unit: str | None) -> tuple:
    if kind == "date":
        return kind, str(value), None
    return kind, round(float(value), 6), unit


def figure_key(f: Figure) -> tuple:
    return key(f.kind, f.day.isoformat() if f.day else f.value, f.unit)


def outlet(row: dict) -> str:
    return row["id"] if row["set"] == "ecbplus" else f"{row['set']}:{row['source']}"


def score_figures(rows: dict[str, dict], labels: dict) -> tuple[dict[str, Counter], float]:
    tally: dict[str, Counter] = defaultdict(Counter)
    took = 0.0
    for story in labels["stories"].values():
        for article_id, gold in story["articles"].items():
            row = rows[article_id]
            text = article_text(row)
            start = time.perf_counter()
            found = figures(text, "en", reference(row))
            took += time.perf_counter() - start
            wanted = Counter(key(*g) for g in gold)
            got = Counter(figure_key(f) for f in found)
            for k in set(wanted) | set(got):
                hit = min(wanted[k], got[k])
                for kind in (k[0], "all"):
                    tally[kind]["hit"] += hit
                    tally[kind]["gold"] += wanted[k]
                    tally[kind]["found"] += got[k]
    return tally, took


def flagged(stated: list[tuple[str, Figure]]) -> list[dict]:
    """The disputes agreement flags: per (kind, unit, subject), the disputed values and their outlets."""
    by: dict[tuple, dict] = {}
    for v in agreement(stated):
        if v.disputed:
            entry = by.setdefault((v.kind, v.unit, v.subject), {"kind": v.kind, "unit": v.unit,
                                                               "subject": v.subject, "values": []})
            entry["values"].append((v.value, v.text, v.outlets))
    return list(by.values())


def matches(dispute: dict, gold: dict) -> bool:
    if (dispute["kind"], dispute["unit"]) != (gold["kind"], gold["unit"]):
        return False
    hits = {g for g in gold["values"] for v, _, _ in dispute["values"]
            if v is not None and abs(v - g) <= 0.005 * abs(g)}
    return len(hits) >= 2


def score_disputes(by_story: dict[str, list[dict]], labels: dict, show: bool) -> dict[str, Counter]:
    tally: dict[str, Counter] = defaultdict(Counter)
    for story_id, rows in sorted(by_story.items()):
        stated = [(outlet(r), f) for r in rows for f in figures(article_text(r), "en", reference(r))]
        found = flagged(stated)
        labelled = labels["stories"].get(story_id)
        if show and found:
            print(f"  {story_id}{'' if labelled else ' (unlabelled)'}:")
            for d in found:
                values = "; ".join(f"{text} ({len(outlets)})" for _, text, outlets in d["values"])
                print(f"    {d['kind']} {d['unit'] or ''} {d['subject']}: {values}")
        if labelled is None:
            continue
        for d in found:
            for scope in ("all", "disputed kinds"):
                tally[scope]["flagged"] += 1
                tally[scope]["right"] += any(matches(d, g) for g in labelled["disputes"])
        for g in labelled["disputes"]:
            for scope in ("all", *(("disputed kinds",) if g["kind"] in DISPUTED_KINDS else ())):
                tally[scope]["gold"] += 1
                tally[scope]["recalled"] += any(matches(d, g) for d in found)
    return tally


def on_formed_stories(rows: dict[str, dict], labels: dict) -> tuple[int, int]:
    """(disputes flagged, of which labelled) on the stories the stories stage forms from the dev set."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import stories_eval

    formed: dict[str, list[dict]] = defaultdict(list)
    predicted, _ = stories_eval.direct(stories_eval.schedule(list(rows.values()), 4))
    for article_id, story_id in predicted.items():
        formed[story_id].append(rows[article_id])
    flagged_n = right = 0
    for members in formed.values():
        stated = [(outlet(r), f) for r in members for f in figures(article_text(r), "en", reference(r))]
        for d in flagged(stated):
            flagged_n += 1
            gold = {r["story"] for r in members}
            right += any(matches(d, g) for s in gold for g in labels["stories"].get(s, {}).get("disputes", ()))
    return flagged_n, right


def ratio(a: int, b: int) -> str:
    return f"{a / b:.3f}" if b else "  -  "


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--gold", default=str(SHARED / "eval" / "stories" / "dev.jsonl"))
    parser.add_argument("--show", action="store_true", help="print every flagged dispute of the dev set")
    args = parser.parse_args(argv)
    gold_path = Path(args.gold)
    if not gold_path.exists():
        print(f"figures_eval: {gold_path} not found (the shared evaluation data is not here); skipped")
        return 0
    rows = {r["id"]: r for r in map(json.loads, gold_path.read_text().splitlines())}
    labels = json.loads(LABELS.read_text())
    by_story: dict[str, list[dict]] = defaultdict(list)
    for r in rows.values():
        by_story[r["story"]].append(r)

    tally, took = score_figures(rows, labels)
    articles = sum(len(s["articles"]) for s in labels["stories"].values())
    print(f"figures: {articles} labelled articles of {len(labels['stories'])} stories "
          f"({took * 1000 / articles:.2f} ms an article)")
    print("  kind       labelled  found  right  precision  recall")
    for kind in ("money", "percent", "count", "date", "all"):
        t = tally[kind]
        print(f"  {kind:<9} {t['gold']:>9} {t['found']:>6} {t['hit']:>6}  {ratio(t['hit'], t['found']):>9}  "
              f"{ratio(t['hit'], t['gold']):>6}")

    if args.show:
        print("flagged disputes, whole dev set:")
    disputes = score_disputes(by_story, labels, args.show)
    print(f"disputes: {len(labels['stories'])} labelled stories")
    print("  scope            labelled  flagged  right  precision  recall")
    for scope in ("disputed kinds", "all"):
        t = disputes[scope]
        print(f"  {scope:<16} {t['gold']:>8} {t['flagged']:>8} {t['right']:>6}  {ratio(t['right'], t['flagged']):>9}  "
              f"{ratio(t['recalled'], t['gold']):>6}")
    flagged_n, right = on_formed_stories(rows, labels)
    print(f"disputes on the stories newsbeam forms from the whole dev set: {flagged_n} flagged, {right} of them "
          f"labelled disputes (precision {ratio(right, flagged_n)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
