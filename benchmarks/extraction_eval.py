"""Article-body extraction quality and speed on the scrapinghub article-extraction benchmark.

    python benchmarks/extraction_eval.py [--data ../shared/eval/extraction/scrapinghub]

For each of the 181 pages, the body text from newsbeam's extract stage (``extract_article``) and, as
references measured in the same run, plain ``trafilatura.extract(html, include_comments=False)`` and
trafilatura doing the stage's work (``bare_extraction`` with metadata and the stage's options), are
compared with the ground-truth ``articleBody`` the way that benchmark defines it: case-sensitive ``\\w+``
tokens, 4-token shingles counted with multiplicity, precision and recall per page, averaged over pages, and
F1 of the averages. Also printed: pages per second for both and their ratio, the two timed page by
page in rotating order.

Exits 0 with a message when the data is not there.
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "eval" / "extraction" / "scrapinghub"
_TOKEN = re.compile(r"\w+", re.UNICODE)


def shingles(text: str, n: int = 4) -> Counter:
    tokens = _TOKEN.findall(text or "")
    return Counter(tuple(tokens[i:i + n]) for i in range(max(1, len(tokens) - n + 1)) if tokens[i:i + n])


def precision_recall(truth: str, predicted: str) -> tuple[float, float]:
    t, p = shingles(truth), shingles(predicted)
    tp = sum((t & p).values())
    precision = tp / sum(p.values()) if p else (1.0 if not t else 0.0)
    recall = tp / sum(t.values()) if t else 1.0
    return precision, recall


def score(pairs: list[tuple[str, str]]) -> tuple[float, float, float]:
    prs = [precision_recall(truth, predicted) for truth, predicted in pairs]
    p = sum(x for x, _ in prs) / len(prs)
    r = sum(y for _, y in prs) / len(prs)
    return p, r, 2 * p * r / (p + r) if p + r else 0.0


def newsbeam_text(html: bytes, url: str) -> str:
    from pipelines.extract import ExtractError, extract_article
    from pipelines.records import FeedEntry, Page

    page = Page(FeedEntry(feed_url="benchmark", link=url), url, 200, None, html, datetime.now(UTC))
    try:
        return extract_article(page).text
    except ExtractError:
        return ""


def plain_text(html: bytes, url: str) -> str:
    import trafilatura

    return trafilatura.extract(html, url=url, include_comments=False) or ""


def trafilatura_with_metadata(html: bytes, url: str) -> str:
    """The same trafilatura work as the stage (metadata, precision, page dates from markup), minus newsbeam."""
    import trafilatura

    from pipelines.extract import DATE_PARAMS

    doc = trafilatura.bare_extraction(html, url=url, with_metadata=True, include_comments=False,
                                      favor_precision=True, date_extraction_params=DATE_PARAMS)
    return (doc.text if doc else "") or ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(DATA))
    args = parser.parse_args(argv)
    data = Path(args.data)
    if not (data / "ground-truth.json").exists():
        print(f"skipped: {data}/ground-truth.json not found")
        return 0
    truth = json.loads((data / "ground-truth.json").read_text("utf-8"))
    pages = {key: gzip.decompress((data / "html" / f"{key}.html.gz").read_bytes()) for key in sorted(truth)}
    newsbeam_text(b"<html><body><p>warm up</p></body></html>", "https://warm.example/")  # imports, caches

    # The extractors run page by page, in rotating order, so machine noise hits all alike.
    extractors = {"plain trafilatura": plain_text, "trafilatura+metadata": trafilatura_with_metadata,
                  "newsbeam extract": newsbeam_text}
    texts: dict[str, dict[str, str]] = {name: {} for name in extractors}
    seconds = dict.fromkeys(extractors, 0.0)
    for i, (key, html) in enumerate(pages.items()):
        order = list(extractors)[i % 3:] + list(extractors)[:i % 3]  # each goes first, second, third in turn
        for name in order:
            started = time.perf_counter()
            texts[name][key] = extractors[name](html, truth[key].get("url") or "")
            seconds[name] += time.perf_counter() - started
    results = {name: (score([(truth[k]["articleBody"], texts[name][k]) for k in pages]), len(pages) / seconds[name])
               for name in extractors}
    print(f"scrapinghub article-extraction benchmark: {len(pages)} pages, 4-token shingles")
    for name, ((p, r, f1), rate) in results.items():
        print(f"{name:20s} P={p:.3f} R={r:.3f} F1={f1:.3f}  {rate:6.1f} pages/s")
    ours = results["newsbeam extract"][1]
    print(f"throughput ratio newsbeam / plain trafilatura: {ours / results['plain trafilatura'][1]:.2f}")
    print(f"throughput ratio newsbeam / trafilatura+metadata (same work): "
          f"{ours / results['trafilatura+metadata'][1]:.2f}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
