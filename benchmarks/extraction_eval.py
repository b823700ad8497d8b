"""Article-body extraction quality and speed on the scrapinghub article-extraction benchmark.

    python benchmarks/extraction_eval.py [--data ../shared/eval/extraction/scrapinghub]

For each of the 181 pages, the body text from newsbeam's extract stage (``extract_article``) and, as
references measured in the same run, the stage without reading figures (``pipelines.figures``),
plain ``trafilatura.extract(html, include_comments=False)`` and
trafilatura with its own metadata extraction and the stage's options (what the stage did before it read
page metadata itself, ``pipelines.pagemeta``), are
compared with the ground-truth ``articleBody`` the way that benchmark defines it: case-sensitive ``\\w+``
tokens, 4-token shingles counted with multiplicity, precision and recall per page, averaged over pages, and
F1 of the averages. Also printed: pages per second for each and the ratios, all timed page by page in
rotating order; and how often the stage's metadata agrees with trafilatura's ``extract_metadata`` where
both found a value, and how often each found one.

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


def newsbeam_text_without_figures(html: bytes, url: str) -> str:
    """The stage with its figures (``pipelines.figures``) left out: what reading figures costs."""
    import pipelines.extract

    reading = pipelines.extract.figures
    pipelines.extract.figures = lambda *_: ()
    try:
        return newsbeam_text(html, url)
    finally:
        pipelines.extract.figures = reading


def plain_text(html: bytes, url: str) -> str:
    import trafilatura

    return trafilatura.extract(html, url=url, include_comments=False) or ""


def trafilatura_with_metadata(html: bytes, url: str) -> str:
    """trafilatura's own metadata extraction (dates from markup only) and the stage's body options."""
    import trafilatura
    from trafilatura.settings import set_date_params

    doc = trafilatura.bare_extraction(html, url=url, with_metadata=True, include_comments=False,
                                      favor_precision=True, date_extraction_params=set_date_params(False))
    return (doc.text if doc else "") or ""


def metadata_agreement(pages: dict[str, bytes], truth: dict) -> None:
    """Per field: pages where each found a value, and agreement where both did (case-insensitive)."""
    from trafilatura import extract_metadata
    from trafilatura.settings import set_date_params
    from trafilatura.utils import load_html

    from pipelines.extract import decode
    from pipelines.pagemeta import page_meta

    fields = {"title": ("title", "title"), "date": ("date", "date"), "author": ("authors", "author"),
              "site name": ("site_name", "sitename"), "description": ("description", "description"),
              "image": ("image", "image")}
    found = {f: [0, 0, 0, 0] for f in fields}  # ours, theirs, both, agree
    for key, html in pages.items():
        url = truth[key].get("url") or None
        ours = page_meta(load_html(decode(html, None)), url)
        theirs = extract_metadata(load_html(decode(html, None)), url, set_date_params(False))
        for name, (mine, its) in fields.items():
            a, b = getattr(ours, mine), getattr(theirs, its)
            a = "; ".join(a) if isinstance(a, tuple) else a
            counts = found[name]
            counts[0] += bool(a)
            counts[1] += bool(b)
            if a and b:
                counts[2] += 1
                counts[3] += a.strip().lower() == b.strip().lower()
    print(f"metadata on {len(pages)} pages: found by newsbeam / by trafilatura, agreement where both found one")
    for name, (a, b, both, agree) in found.items():
        print(f"  {name:12s} {a:4d} / {b:4d}   agree {agree}/{both}")


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
                  "newsbeam extract": newsbeam_text, "newsbeam, no figures": newsbeam_text_without_figures}
    texts: dict[str, dict[str, str]] = {name: {} for name in extractors}
    seconds = dict.fromkeys(extractors, 0.0)
    for i, (key, html) in enumerate(pages.items()):
        n = len(extractors)
        order = list(extractors)[i % n:] + list(extractors)[:i % n]  # each goes first, second ... in turn
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
    print(f"throughput ratio newsbeam / trafilatura with its metadata: "
          f"{ours / results['trafilatura+metadata'][1]:.2f}")
    print(f"throughput ratio newsbeam / newsbeam without reading figures: "
          f"{ours / results['newsbeam, no figures'][1]:.3f}")
    metadata_agreement(pages, truth)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
