"""Per-article story assignment cost against history size, on a synthetic news stream.

    python benchmarks/stories_scale.py [--articles 100000] [--batch 1000]   # --articles 1000000: ~15 min

A synthetic stream of articles arrives at a steady rate (``--per-day`` a day); each belongs to a story
that lives a few days and is described by its own rare terms mixed with common ones, as real coverage is.
The stream goes through the stories stage's pure assignment (``assign_batch``) in run-sized batches,
with the window of the default config. Printed at each checkpoint: the history ingested so far, what the
index holds (it is pruned to the window), and microseconds (and articles per second, one core) per article
over the last ``TRAILING`` batches, with the ratio to the reference checkpoint of the same run (machines are
noisy; ratios are what to compare). The reference is the first checkpoint after the window has filled (10 batches = 5
days of the default stream): until then the index grows, after it the cost must stay flat however long the history.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections import deque
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TRAILING = 5  # batches averaged at each checkpoint (one batch alone varies by 10% here)


def synthetic_stream(n: int, per_day: int, seed: int = 11):
    from pipelines.stories.features import NUM_PERM, ArticleFeatures, packed_terms, signature

    rng = random.Random(seed)
    common = [f"common{i}" for i in range(2000)]
    start = datetime(2024, 1, 1, tzinfo=UTC)
    live: list[tuple[int, list[str], datetime]] = []
    next_story = 0
    for i in range(n):
        when = start + timedelta(days=i / per_day)
        live = [s for s in live if s[2] > when]
        if not live or rng.random() < 0.3:  # a new event breaks
            ends = when + timedelta(days=rng.uniform(1, 4))
            live.append((next_story, [f"s{next_story}e{j}" for j in range(12)], ends))
            next_story += 1
        story, entities, _ = rng.choice(live)
        terms = {t: rng.uniform(0.5, 1.0) for t in rng.sample(entities, 8)}
        terms.update({t: rng.uniform(0.05, 0.2) for t in rng.sample(common, 30)})
        norm = sum(w * w for w in terms.values()) ** 0.5
        vector, weights = packed_terms({t: w / norm for t, w in terms.items()})
        yield ArticleFeatures(
            article_id=f"a{i}", source=f"outlet{rng.randrange(50)}", title=None, time=when,
            content_hash=f"h{i}", terms=vector, weights=weights,
            minhash=signature(rng.getrandbits(32) for _ in range(NUM_PERM)),
        )


def main(argv: list[str] | None = None) -> int:
    from pipelines.config import StoriesConfig
    from pipelines.stories.assign import assign_batch
    from pipelines.stories.index import StoryIndex

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--articles", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=1000, help="articles per simulated run")
    parser.add_argument("--per-day", type=int, default=2000, help="articles arriving per simulated day")
    args = parser.parse_args(argv)

    config, index = StoriesConfig(), StoryIndex()
    reference_at = 10 * args.batch
    checkpoints = {args.batch, reference_at, args.articles // 4, args.articles // 2, args.articles}
    stream = synthetic_stream(args.articles, args.per_day)
    rows = []
    print(f"{'history':>9} {'stories held':>13} {'articles held':>14} {'us/article':>11} {'articles/s':>11} "
          f"{'ratio':>6}")
    ingested = 0
    recent: deque[tuple[float, int]] = deque(maxlen=TRAILING)
    while ingested < args.articles:
        batch = [next(stream) for _ in range(min(args.batch, args.articles - ingested))]
        started = time.perf_counter()
        assign_batch(index, batch, config, max(f.time for f in batch))  # the run clock: its newest article
        recent.append((time.perf_counter() - started, len(batch)))
        ingested += len(batch)
        if ingested in checkpoints:
            per_article = sum(t for t, _ in recent) / sum(n for _, n in recent) * 1e6
            rows.append((ingested, len(index.stories), len(index.articles), per_article))
    reference = next((r[3] for r in rows if r[0] == reference_at), rows[0][3])
    for ingested, stories, articles, per_article in rows:
        print(f"{ingested:>9} {stories:>13} {articles:>14} {per_article:>11.0f} {1e6 / per_article:>11.0f} "
              f"{per_article / reference:>6.2f}"
              + ("  (reference)" if ingested == reference_at else ""))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
