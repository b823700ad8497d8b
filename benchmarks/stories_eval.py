"""Story clustering quality on a labelled set, measured through the real pipeline.

    python benchmarks/stories_eval.py [--gold ../shared/eval/stories/dev.jsonl] [--runs 4]

Each labelled article becomes a web page and a feed entry, and the CLI's batch job ingests them as a
sequence of scheduled runs on a simulated clock, one output for all (so later runs must continue the
stories of earlier ones); the stored ``articles/`` are then scored with B-cubed and pairwise
precision/recall/F1 per sub-set and overall (``shared/tools/storyeval.py``).

The schedule: each sub-set is a separate crawl period (the sets come from different years). Within a set,
dated articles arrive in publication order, one run per publication day, the run clock at the end of the
day. Undated articles are inserted at positions drawn with a fixed seed and ingested by the run of the day
they land in, taking that run's time (the pipeline uses fetch time for undated articles): placement uses
the set, never the story label. A set with no dates at all is split into ``--runs`` runs six hours apart.

``--direct`` skips Beam, fetching and extraction and feeds the texts straight to the stories stage's
pure functions in the same order: quick for exploring, not the figure to report.

``--figures`` (with ``--direct``) adds each article's money, percent and count figures (``pipelines.figures``,
value to two significant digits, with unit and subject) to its term vector as rare terms: the experiment of
whether figures help clustering (newsbeam keeps them out of the vector: they did not help; see the README).

``--ceiling`` is not a method but a bound: average-link clustering of the stage's own term vectors over
every article at once (no time, no arrival order), cut at each similarity from 0.10 to 0.60 and scored
against the labels; it prints the cut that scores best overall and each set's own best cut. No online
assignment of these vectors can be expected to beat it, so a gap between the target and this bound has to
be closed by better signals, not by a better linkage.

Exits 0 with a message when the shared evaluation data is not there.
"""

from __future__ import annotations

import argparse
import html
import importlib.util
import json
import random
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
BASE = "https://stories-eval.example"


def load_storyeval():
    spec = importlib.util.spec_from_file_location("storyeval", SHARED / "tools" / "storyeval.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def schedule(rows: list[dict], runs_per_undated_set: int) -> list[tuple[datetime, list[dict]]]:
    """(simulated run time, articles) in run order; see the module docstring."""
    rng = random.Random(7)
    by_set: dict[str, list[dict]] = {}
    for r in sorted(rows, key=lambda r: r["id"]):
        by_set.setdefault(r["set"], []).append(r)
    first = {name: min((r["published"] for r in rs if r.get("published")), default="9999")
             for name, rs in by_set.items()}
    synthetic = datetime(2026, 1, 1, tzinfo=UTC)
    runs: list[tuple[datetime, list[dict]]] = []
    for name in sorted(by_set, key=lambda n: (first[n], n)):
        dated = sorted((r for r in by_set[name] if r.get("published")), key=lambda r: (r["published"], r["id"]))
        undated = [r for r in by_set[name] if not r.get("published")]
        rng.shuffle(undated)
        if not dated:
            size = -(-len(undated) // runs_per_undated_set)
            for k in range(0, len(undated), size):
                runs.append((synthetic, undated[k:k + size]))
                synthetic += timedelta(hours=6)
            synthetic += timedelta(days=30)
            continue
        sequence = dated[:]
        for r in undated:
            sequence.insert(rng.randrange(len(sequence) + 1), r)
        day = dated[0]["published"]
        by_day: dict[str, list[dict]] = {}
        for r in sequence:
            day = max(day, r.get("published") or day)
            by_day.setdefault(day, []).append(r)
        for day, batch in sorted(by_day.items()):
            runs.append((datetime.fromisoformat(day).replace(hour=23, tzinfo=UTC), batch))
    return runs


def paragraphs(text: str) -> list[str]:
    parts = [p.strip() for p in text.replace("\\n", "\n").split("\n")]
    return [p for p in parts if p]


def body(row: dict) -> str:
    """The article text as the stories stage sees it when it skips fetching and extraction."""
    return "\n".join(paragraphs(row["text"]))


def page(row: dict) -> str:
    title = html.escape(row.get("title") or "")
    body = "\n".join(f"<p>{html.escape(p)}</p>" for p in paragraphs(row["text"]))
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{title}</title></head>'
            f"<body><article><h1>{title}</h1>\n{body}\n</article></body></html>\n")


def feed(rows: list[dict]) -> str:
    items = []
    for r in rows:
        date = ""
        if r.get("published"):
            when = datetime.fromisoformat(r["published"]).replace(hour=12, tzinfo=UTC)
            date = f"<pubDate>{format_datetime(when)}</pubDate>"
        items.append(f"<item><title>{html.escape(r.get('title') or '')}</title>"
                     f"<link>{BASE}/{r['id']}</link><guid>{r['id']}</guid>{date}</item>")
    return ('<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>eval</title>'
            + "\n".join(items) + "</channel></rss>\n")


def write_inputs(runs: list[tuple[datetime, list[dict]]], work: Path) -> list[Path]:
    """Pages, a replay manifest and one config per run; returns the configs in run order."""
    (work / "web").mkdir(parents=True)
    manifest = []
    configs = []
    for k, (_, batch) in enumerate(runs):
        for r in batch:
            (work / "web" / f"{r['id']}.html").write_text(page(r), "utf-8")
            manifest += ["[[response]]", f'url = "{BASE}/{r["id"]}"', f'file = "web/{r["id"]}.html"', ""]
        (work / f"run-{k}.xml").write_text(feed(batch), "utf-8")
        config = work / f"run-{k}.toml"
        config.write_text(f'[[feeds]]\nurl = "run-{k}.xml"\n[fetch]\nreplay = "replay.toml"\n'
                          f'[output]\npath = "out"\n', "utf-8")
        configs.append(config)
    (work / "replay.toml").write_text("\n".join(manifest), "utf-8")
    return configs


def through_pipeline(runs: list[tuple[datetime, list[dict]]], beam_args: list[str]) -> tuple[dict[str, str], float]:
    import pyarrow.dataset as ds

    from pipelines.cli import run_batch
    from pipelines.config import load_config
    from pipelines.records import Run

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        configs = write_inputs(runs, work)
        start = time.perf_counter()
        for k, (path, (when, _)) in enumerate(zip(configs, runs, strict=True)):
            summary = run_batch(load_config(path), beam_args, Run(f"{when:%Y%m%dT%H%M%SZ}-{k:06d}", when))
            print(f"  run {k} at {when:%Y-%m-%d %H:%M}: {summary['entries']['seen']} entries, "
                  f"{summary['articles_written']} articles, {summary['stories']['new']} new / "
                  f"{summary['stories']['continued']} continued stories, rejects {summary['rejects']['by_reason']}",
                  file=sys.stderr)
        seconds = time.perf_counter() - start
        table = ds.dataset(str(work / "out" / "articles"), format="parquet", partitioning="hive").to_table(
            columns=["url", "story_id"])
    pred = {url.rsplit("/", 1)[1]: story for url, story in zip(*table.to_pydict().values(), strict=True)}
    return pred, seconds


def with_figure_terms(features, title: str | None, text: str):
    """The features with the article's figures added to its term vector, as terms as rare as any."""
    from dataclasses import replace

    from pipelines.figures import DATE, figures
    from pipelines.stories.features import packed_terms

    vector = dict(features.vector())
    for f in figures("\n\n".join(filter(None, (title, text))), "en"):
        if f.kind != DATE and f.value:
            token = f"{f.kind}:{f.unit or ''}:{float(f'{f.value:.2g}'):g}:{f.subject_key or ''}"
            vector[token] = vector.get(token, 0.0) + 8.0 / 40  # about a rare term's weight in a 40-term vector
    norm = sum(w * w for w in vector.values()) ** 0.5 or 1.0
    terms, weights = packed_terms({t: w / norm for t, w in vector.items()})
    return replace(features, terms=terms, weights=weights)


def direct(runs: list[tuple[datetime, list[dict]]], use_figures: bool = False) -> tuple[dict[str, str], float]:
    from pipelines.config import StoriesConfig
    from pipelines.stories.assign import assign_batch
    from pipelines.stories.features import article_features
    from pipelines.stories.index import StoryIndex
    from pipelines.text import content_hash
    from pipelines.urls import article_id, canonicalize

    index, pred, config = StoryIndex(), {}, StoriesConfig()
    ids: dict[str, str] = {}
    start = time.perf_counter()
    for when, rows in runs:
        batch = []
        for r in rows:
            published = (datetime.fromisoformat(r["published"]).replace(hour=12, tzinfo=UTC)
                         if r.get("published") else when)
            text = body(r)
            # the pipeline's article id, so that ties in time are ordered as the pipeline orders them
            batch.append(article_features(article_id(canonicalize(f"{BASE}/{r['id']}")), r.get("source") or "",
                                          r.get("title") or None, text, "en", published, content_hash(text),
                                          dated=bool(r.get("published"))))
            if use_figures:
                batch[-1] = with_figure_terms(batch[-1], r.get("title") or None, text)
            ids[batch[-1].article_id] = r["id"]
        pred.update({ids[a.article_id]: a.story_id for a in assign_batch(index, batch, config, when).assignments})
    return pred, time.perf_counter() - start


def vectors(rows: list[dict]) -> list[dict[str, float]]:
    from pipelines.stories.features import term_vector

    return [term_vector(r.get("title") or None, body(r), "en") for r in rows]


def average_link_merges(sim: list[list[float]]) -> list[tuple[float, int, int]]:
    """Average-link (UPGMA) agglomeration on a similarity matrix: (average similarity, i, j) per merge,
    in merge order, cluster j merging into cluster i. Average link is monotone, so the merges at or above a
    similarity are exactly a prefix of this list."""
    import numpy as np

    total = np.array(sim, dtype=float)
    n = len(total)
    size = np.ones(n)
    np.fill_diagonal(total, -np.inf)
    merges = []
    for _ in range(n - 1):
        avg = total / np.outer(size, size)
        i, j = divmod(int(np.argmax(avg)), n)
        merges.append((float(avg[i, j]), i, j))
        total[i, :] += total[j, :]
        total[:, i] += total[:, j]
        total[i, i] = -np.inf
        total[j, :] = total[:, j] = -np.inf
        size[i] += size[j]
    return merges


def cut(merges: list[tuple[float, int, int]], n: int, similarity: float) -> list[int]:
    """Cluster labels after the merges at or above ``similarity``."""
    parent = list(range(n))

    def root(k: int) -> int:
        while parent[k] != k:
            parent[k] = parent[parent[k]]
            k = parent[k]
        return k

    for score, i, j in merges:
        if score < similarity:
            break
        parent[root(j)] = root(i)
    return [root(k) for k in range(n)]


def ceiling(rows: list[dict]) -> None:
    import numpy as np

    vecs = vectors(rows)
    vocab = {t: k for k, t in enumerate(sorted({t for v in vecs for t in v}))}
    matrix = np.zeros((len(vecs), len(vocab)))
    for k, v in enumerate(vecs):
        for t, w in v.items():
            matrix[k, vocab[t]] = w
    merges = average_link_merges((matrix @ matrix.T).tolist())
    evaluate = load_storyeval().score
    scored = []
    for step in range(10, 61):
        labels = cut(merges, len(rows), step / 100)
        scored.append((step / 100, evaluate(rows, {r["id"]: str(lab) for r, lab in zip(rows, labels, strict=True)})))
    at, best = max(scored, key=lambda ts: ts[1]["ALL"][2])
    print(f"ceiling: batch average link over all {len(rows)} articles, best overall cut at similarity {at:.2f}")
    for name, (bp, br, bf, *_) in best.items():
        own_at, own = max(scored, key=lambda ts: ts[1][name][2])
        print(f"{name:10s} B3 P={bp:.3f} R={br:.3f} F1={bf:.3f} | best cut for this set alone: "
              f"F1={own[name][2]:.3f} at {own_at:.2f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gold", default=str(SHARED / "eval" / "stories" / "dev.jsonl"))
    parser.add_argument("--runs", type=int, default=4, help="runs for a set without publication dates")
    parser.add_argument("--direct", action="store_true", help="skip Beam/fetch/extract (exploration only)")
    parser.add_argument("--figures", action="store_true", help="with --direct: figures as terms (experiment)")
    parser.add_argument("--ceiling", action="store_true",
                        help="print the batch average-link bound for the stage's vectors (not a method)")
    args, beam_args = parser.parse_known_args(argv)
    gold = Path(args.gold)
    if not gold.exists() or not (SHARED / "tools" / "storyeval.py").exists():
        print(f"skipped: {gold} or shared/tools/storyeval.py not found")
        return 0
    rows = [json.loads(line) for line in gold.open()]
    if args.ceiling:
        ceiling(rows)
        return 0
    runs = schedule(rows, args.runs)
    pred, seconds = direct(runs, args.figures) if args.direct else through_pipeline(runs, beam_args)
    missing = [r["id"] for r in rows if r["id"] not in pred]
    scores = load_storyeval().score(rows, pred)
    mode = "direct (no Beam)" if args.direct else "through the pipeline"
    mode += ", figures as terms" if args.figures else ""
    mode += f", {len(runs)} scheduled runs"
    print(f"{gold.name}: {len(rows)} articles, {len(missing)} not stored, {mode}, {seconds:.1f}s")
    for name, (bp, br, bf, pp, pr, pf) in scores.items():
        print(f"{name:10s} B3 P={bp:.3f} R={br:.3f} F1={bf:.3f} | pairwise P={pp:.3f} R={pr:.3f} F1={pf:.3f}")
    if missing:
        print(f"not stored (scored as singletons): {', '.join(missing[:10])}{' …' if len(missing) > 10 else ''}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
