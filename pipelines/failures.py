"""One failure mechanism for every stage: an element whose processing raises becomes Reject rows.

Stages apply their per-element steps through ``Guarded``, which uses Beam's
``ParDo.with_exception_handling``: an element's outputs are buffered and emitted only when processing it
finished, otherwise the element goes to a dead-letter output. ``Guarded`` turns each dead letter into one
``Reject`` (reason ``internal_error``, the stage's name, the exception's type, message and the line that
raised it) per feed or feed entry the element stands for (``subjects``), and the run goes on. A stage's own
code therefore states only what it does; which failures it expects (a 404, an empty page) it reports with
their own reasons, and anything else is an ``internal_error`` row rather than a failed run.

Counting follows from this: stages count after the work that can fail, and rejects are counted where they
are written (``pipelines.sinks``), so the run summary reconciles whichever way an element ends.

The story assignment handles a whole run in one element; it applies ``attempt`` to each article, so one
article's failure rejects that article alone.
"""

from __future__ import annotations

import logging
import traceback
import typing
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

import apache_beam as beam

from pipelines.records import Article, FeedEntry, FeedSpec, Page, Reject, Story

INTERNAL_ERROR = "internal_error"
REJECTS = "rejects"
_FAILED = "failed"  # Beam's dead-letter output inside Guarded
MAX_DETAIL = 1000

_log = logging.getLogger(__name__)


def subjects(element: Any) -> list[tuple[str, str | None]]:
    """The (url, feed_url) of every feed or feed entry an element stands for; feed_url is None for a feed.

    Keyed elements, groups and joins stand for the records they hold.
    """
    if isinstance(element, FeedSpec):
        return [(element.url, None)]
    if isinstance(element, FeedEntry):
        return [(element.link, element.feed_url)]
    if isinstance(element, Page):
        return subjects(element.entry)
    if isinstance(element, Article):
        return [(element.url, element.feed_url)]
    if isinstance(element, Story):
        return [(f"story {element.story_id}", None)]
    url, feed_url = getattr(element, "url", None), getattr(element, "feed_url", None)
    if isinstance(url, str) and (feed_url is None or isinstance(feed_url, str)):
        return [(url, feed_url)]  # e.g. ArticleFeatures
    if isinstance(element, tuple) and len(element) == 2:  # (key, value): the value is what was processed
        return subjects(element[1])
    if isinstance(element, dict):  # a CoGroupByKey result
        return [s for value in element.values() for s in subjects(value)]
    if isinstance(element, Iterable) and not isinstance(element, str | bytes):
        return [s for item in element for s in subjects(item)]
    return []


def describe(error: BaseException) -> str:
    """``Type: message (File "...", line N, in function)``: the exception and the innermost frame."""
    return _detail(traceback.format_exception(error))


def _detail(lines: list[str]) -> str:
    """The detail of a formatted traceback: its last line (type and message) and its innermost frame."""
    what = lines[-1].strip() if lines else "unknown error"
    where = next((line.strip().split("\n")[0] for line in reversed(lines) if line.lstrip().startswith("File ")),
                 None)
    text = what + (f" ({where})" if where else "")
    return text if len(text) <= MAX_DETAIL else text[:MAX_DETAIL - 1] + "…"


def rejects_for(element: Any, stage: str, detail: str, at: datetime | None = None) -> list[Reject]:
    """The Reject rows for an element whose processing failed: one per feed or entry it stands for."""
    at = at or datetime.now(UTC)
    found = subjects(element) or [(repr(element)[:200], None)]  # never lose a failure to an unknown type
    return [Reject(url, feed_url, stage, INTERNAL_ERROR, detail, at) for url, feed_url in found]


def _dead_letter_rejects(dead: tuple[Any, tuple[type, str, list[str]]], stage: str) -> Iterator[Reject]:
    element, (_, _, lines) = dead
    detail = _detail(lines)
    # each failure is a reject row with this detail and counted in the summary; the traceback is for --debug
    _log.info("%s stage: %s on %s\n%s", stage, detail, subjects(element)[:3], "".join(lines[-6:]))
    yield from rejects_for(element, stage, detail)


T = typing.TypeVar("T")


def attempt(work: Callable[[], T]) -> tuple[T | None, str | None]:
    """``(result, None)``, or ``(None, detail)`` when the work raised: for a step that handles many
    articles in one element (story assignment), so that one article's failure costs that article only."""
    try:
        return work(), None
    except Exception as e:  # the mechanism itself: any failure becomes a reject row
        _log.info("%s", describe(e), exc_info=True)  # a reject row tells it; the traceback is for --debug
        return None, describe(e)


class Guarded(beam.PTransform):
    """Applies a ParDo (or Map/FlatMap) so that an element that raises becomes ``internal_error`` rejects.

    Returns a dict of the ParDo's outputs (``main`` and ``tags``) with ``rejects`` holding both the
    ParDo's own ``rejects`` output, if it has one, and the rejects for failed elements.
    """

    def __init__(self, pardo: beam.ParDo, stage: str, *tags: str, main: str = "main"):
        super().__init__()
        self._pardo, self._stage, self._tags, self._main = pardo, stage, tags, main

    def expand(self, pcoll):
        hints = {tag: typing.Any for tag in self._tags}  # declared, so Beam does not warn about them
        results = pcoll | "Process" >> (
            self._pardo.with_output_types(typing.Any, **hints)
            .with_exception_handling(main_tag=self._main, dead_letter_tag=_FAILED)
            .with_outputs(*self._tags, main=self._main))
        failed = results[_FAILED] | "AsRejects" >> beam.FlatMap(_dead_letter_rejects, self._stage)
        outputs = {tag: results[tag] for tag in (self._main, *self._tags)}
        if REJECTS in self._tags:
            outputs[REJECTS] = (results[REJECTS], failed) | "AllRejects" >> beam.Flatten()
        else:
            outputs[REJECTS] = failed
        return outputs
