"""TOML config -> one validated, frozen ``Config``.

Every problem raises ``ConfigError`` naming the file, the key and what is wrong, before any work
starts. Unknown keys are errors (a typo must not silently fall back to a default). Relative paths in
the file are resolved against the file's own directory, so a config works from any working directory.
"""

from __future__ import annotations

import math
import posixpath
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from lxml import etree

from pipelines.records import FeedSpec


class ConfigError(Exception):
    """A config that cannot be used; the message names file, key and problem."""

    def __init__(self, file: str, key: str | None, problem: str):
        self.file, self.key, self.problem = file, key, problem
        where = f"{file}: {key}" if key else file
        super().__init__(f"{where}: {problem}")


@dataclass(frozen=True)
class FetchConfig:
    timeout: float = 30.0  # seconds for one attempt at a URL: connect, redirects and body, politeness waits apart
    connect_timeout: float = 10.0  # seconds to establish a connection
    read_timeout: float = 15.0  # seconds of silence while waiting for the server's next bytes
    max_bytes: int = 5_000_000  # body size cap, enforced while reading (decompressed size)
    max_redirects: int = 5
    retries: int = 2  # further attempts after a timeout, connection error, 5xx or 429
    backoff: float = 1.0  # seconds; the n-th retry waits up to backoff * 2**n (full jitter)
    max_retry_wait: float = 60.0  # a longer Retry-After gives up instead of waiting
    obey_robots: bool = True  # article pages disallowed by robots.txt are rejected (configured feeds are not)
    host_delay: float = 1.0  # seconds between two requests of one fetcher to the same host
    host_concurrency: int = 2  # workers fetching pages from one host at the same time, at most
    user_agent: str = "newsbeam/0.1 (+https://github.com/newsbeam/newsbeam)"
    allow_private_addresses: bool = False
    replay: str | None = None  # a replay manifest: serve recorded responses instead of the network


@dataclass(frozen=True)
class ExtractConfig:
    # groups of registrable domains that are one site: a page on one may name its canonical URL on another
    same_site: tuple[tuple[str, ...], ...] = ()


@dataclass(frozen=True)
class StoriesConfig:
    window_days: float = 3.0  # how far apart in time two articles of one story may be
    threshold: float = 0.25  # minimum similarity between an article and a story to join it
    near_duplicate_threshold: float = 0.6  # minimum 5-word-shingle Jaccard for a near-identical copy


@dataclass(frozen=True)
class StreamConfig:
    poll_interval: float = 300.0  # seconds from the start of one poll of every feed to the start of the next


@dataclass(frozen=True)
class OutputConfig:
    path: str = "out"


@dataclass(frozen=True)
class Config:
    source: str  # the file this config was read from
    feeds: tuple[FeedSpec, ...]
    fetch: FetchConfig = field(default_factory=FetchConfig)
    extract: ExtractConfig = field(default_factory=ExtractConfig)
    stories: StoriesConfig = field(default_factory=StoriesConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    stream: StreamConfig = field(default_factory=StreamConfig)


# Upper bounds: a value past these is a typo or a unit slip (milliseconds for seconds), and some would quietly
# switch a guarantee off (a timeout of a year holds a worker; 1e11 retries never give up).
LIMITS = {
    "fetch.timeout": 3600.0, "fetch.connect_timeout": 3600.0, "fetch.read_timeout": 3600.0,
    "fetch.max_bytes": 1 << 30, "fetch.max_redirects": 30, "fetch.retries": 10, "fetch.backoff": 600.0,
    "fetch.max_retry_wait": 86400.0, "fetch.host_delay": 3600.0, "fetch.host_concurrency": 1000,
    "stories.window_days": 365.0, "stream.poll_interval": 7 * 86400.0,
}


def load_config(path: str | Path) -> Config:
    path = Path(path)
    name = str(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(name, None, "file not found") from None
    except OSError as e:
        raise ConfigError(name, None, f"cannot read: {e.strerror or e}") from None
    try:
        doc = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(name, None, "not UTF-8 text") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(name, None, f"invalid TOML: {e}") from None
    return parse_config(doc, name, base_dir=path.resolve().parent)


def parse_config(doc: dict[str, Any], name: str, base_dir: Path) -> Config:
    _no_unknown(doc, {"feeds", "fetch", "extract", "stories", "output", "stream"}, name, "")
    feeds = doc.get("feeds")
    if not isinstance(feeds, list) or not feeds:
        raise ConfigError(name, "feeds", "at least one [[feeds]] table with a url or opml is required")
    return Config(
        source=name,
        feeds=tuple(spec for i, f in enumerate(feeds) for spec in _feeds(f, name, f"feeds[{i}]", base_dir)),
        fetch=_fetch(_table(doc, "fetch", name), name, base_dir),
        extract=_extract(_table(doc, "extract", name), name),
        stories=_stories(_table(doc, "stories", name), name),
        output=OutputConfig(path=_resolve(_get(_table(doc, "output", name), "path", str, name, "output",
                                               OutputConfig.path), base_dir)),
        stream=_stream(_table(doc, "stream", name), name),
    )


def _feeds(raw: Any, name: str, key: str, base_dir: Path) -> list[FeedSpec]:
    """One [[feeds]] table: a feed ``url``, or an ``opml`` file listing feeds."""
    if not isinstance(raw, dict):
        raise ConfigError(name, key, "must be a table with a url or an opml file")
    _no_unknown(raw, {"url", "name", "opml"}, name, key)
    url, opml = _get(raw, "url", str, name, key, None), _get(raw, "opml", str, name, key, None)
    if bool(url) == bool(opml):
        raise ConfigError(name, key, "needs exactly one of url or opml")
    if opml:
        return _opml_feeds(_resolve(opml, base_dir), name, f"{key}.opml", _as_written(opml))
    identity, location = _feed_location(url, name, f"{key}.url", base_dir)
    return [FeedSpec(url=identity, name=_get(raw, "name", str, name, key, None), location=location)]


def _opml_feeds(path: str, name: str, key: str, written: str) -> list[FeedSpec]:
    """The feeds of an OPML subscription list: every <outline> with an xmlUrl, at any depth; relative
    paths in it are relative to the OPML file (``path``; ``written`` is how the config names it)."""
    try:
        parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)
        root = etree.parse(path, parser).getroot()
    except OSError as e:
        raise ConfigError(name, key, f"cannot read OPML file {path}: {e}") from None
    except etree.XMLSyntaxError as e:
        raise ConfigError(name, key, f"{path} is not well-formed OPML: {e}") from None
    if root.tag != "opml":
        raise ConfigError(name, key, f"{path} is not OPML (root element <{root.tag}>)")
    feeds = []
    for outline in root.iter("outline"):
        url = (outline.get("xmlUrl") or "").strip()
        if url:
            where = f"{key} ({path}, outline {outline.get('text') or outline.get('title') or url!r})"
            identity, location = _feed_location(url, name, where, Path(path).parent,
                                                written_dir=posixpath.dirname(written))
            feeds.append(FeedSpec(url=identity, name=outline.get("title") or outline.get("text"), location=location))
    if not feeds:
        raise ConfigError(name, key, f"{path} lists no feeds (no <outline xmlUrl=...>)")
    return feeds


def _feed_location(url: str, name: str, key: str, base_dir: Path, written_dir: str = "") -> tuple[str, str | None]:
    """(what names the feed in rows and state, where it is read from, or None to read it from its name).

    An http(s) URL is both. A local file is read from its absolute path, and named as the config (or the OPML
    file, itself at ``written_dir`` as the config names it) gives it, normalised: a relative path stays
    relative, so the name, and every row that carries it, is the same in every checkout."""
    try:
        parts = urlsplit(url)
    except ValueError as e:
        raise ConfigError(name, key, f"{url!r} is not a valid URL: {e}") from None
    scheme = parts.scheme.lower()
    if scheme in ("http", "https"):
        if not parts.hostname:
            raise ConfigError(name, key, f"{url!r} has no host")
        return url, None
    if scheme == "file":
        return url, str(Path(parts.path))
    if scheme and len(scheme) > 1:  # a one-letter "scheme" is a Windows drive
        raise ConfigError(name, key, f"{url!r}: only http(s) URLs, file:// URLs and local paths are allowed")
    path = _as_written(url)
    return (path if posixpath.isabs(path) else posixpath.normpath(posixpath.join(written_dir, path))), \
        _resolve(url, base_dir)


def _as_written(path: str) -> str:
    """A local path as the config gives it, normalised (``./a/../b.xml`` -> ``b.xml``)."""
    return posixpath.normpath(path.strip().replace("\\", "/"))


def _fetch(raw: dict[str, Any], name: str, base_dir: Path) -> FetchConfig:
    d = FetchConfig()
    _no_unknown(raw, set(FetchConfig.__dataclass_fields__), name, "fetch")
    replay = _get(raw, "replay", str, name, "fetch", None)
    cfg = FetchConfig(
        timeout=_positive(_get(raw, "timeout", float, name, "fetch", d.timeout), name, "fetch.timeout"),
        connect_timeout=_positive(_get(raw, "connect_timeout", float, name, "fetch", d.connect_timeout),
                                  name, "fetch.connect_timeout"),
        read_timeout=_positive(_get(raw, "read_timeout", float, name, "fetch", d.read_timeout),
                               name, "fetch.read_timeout"),
        max_bytes=_positive(_get(raw, "max_bytes", int, name, "fetch", d.max_bytes), name, "fetch.max_bytes"),
        max_redirects=_get(raw, "max_redirects", int, name, "fetch", d.max_redirects),
        retries=_get(raw, "retries", int, name, "fetch", d.retries),
        backoff=_get(raw, "backoff", float, name, "fetch", d.backoff),
        max_retry_wait=_get(raw, "max_retry_wait", float, name, "fetch", d.max_retry_wait),
        obey_robots=_get(raw, "obey_robots", bool, name, "fetch", d.obey_robots),
        host_delay=_get(raw, "host_delay", float, name, "fetch", d.host_delay),
        host_concurrency=_positive(_get(raw, "host_concurrency", int, name, "fetch", d.host_concurrency),
                                   name, "fetch.host_concurrency"),
        user_agent=_get(raw, "user_agent", str, name, "fetch", d.user_agent),
        allow_private_addresses=_get(raw, "allow_private_addresses", bool, name, "fetch",
                                     d.allow_private_addresses),
        replay=_resolve(replay, base_dir) if replay else None,
    )
    for key in ("max_redirects", "retries", "backoff", "max_retry_wait", "host_delay"):
        if getattr(cfg, key) < 0:
            raise ConfigError(name, f"fetch.{key}", "must be 0 or more")
    _within_limits(cfg, "fetch", name)
    if not cfg.user_agent.strip() or not cfg.user_agent.isprintable() or not cfg.user_agent.isascii():
        raise ConfigError(name, "fetch.user_agent", "must be printable ASCII text, not empty")
    if cfg.replay:
        try:
            replay_manifest(cfg.replay)
        except ConfigError as e:
            raise ConfigError(name, "fetch.replay", str(e)) from None
    return cfg


@dataclass(frozen=True)
class Recorded:
    """One response of a replay manifest."""

    url: str
    status: int = 200
    file: str | None = None  # absolute path of the body
    content_type: str | None = None
    location: str | None = None


def replay_manifest(path: str) -> dict[str, Recorded]:
    """The responses of a replay manifest by URL; ``ConfigError`` names the manifest, the key and the problem."""
    where = path
    try:
        doc = tomllib.loads(Path(path).read_text("utf-8"))
    except FileNotFoundError:
        raise ConfigError(where, None, "replay manifest does not exist") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(where, None, f"cannot read: {e}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(where, None, f"invalid TOML: {e}") from None
    _no_unknown(doc, {"response"}, where, "")
    items = doc.get("response", [])
    if not isinstance(items, list):
        raise ConfigError(where, "response", "must be an array of [[response]] tables")
    base = Path(path).resolve().parent
    responses: dict[str, Recorded] = {}
    for i, item in enumerate(items):
        key = f"response[{i}]"
        if not isinstance(item, dict):
            raise ConfigError(where, key, "must be a table")
        _no_unknown(item, {"url", "file", "status", "content_type", "location"}, where, key)
        url = _get(item, "url", str, where, key, None)
        if not url:
            raise ConfigError(where, f"{key}.url", "is required")
        status = _get(item, "status", int, where, key, 200)
        if not 100 <= status <= 599:
            raise ConfigError(where, f"{key}.status", f"must be an HTTP status (100-599), got {status}")
        file = _get(item, "file", str, where, key, None)
        if file is not None and not (base / file).is_file():
            raise ConfigError(where, f"{key}.file", f"{base / file} does not exist")
        responses[url] = Recorded(url, status, str(base / file) if file else None,
                                  _get(item, "content_type", str, where, key, None),
                                  _get(item, "location", str, where, key, None))
    return responses


_DOMAIN = re.compile(r"(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9-]{2,63}")


def _extract(raw: dict[str, Any], name: str) -> ExtractConfig:
    _no_unknown(raw, set(ExtractConfig.__dataclass_fields__), name, "extract")
    groups = _get(raw, "same_site", list, name, "extract", [])
    same_site = []
    for i, group in enumerate(groups):
        key = f"extract.same_site[{i}]"
        if not isinstance(group, list) or len(group) < 2 or not all(isinstance(d, str) for d in group):
            raise ConfigError(name, key, "must be a list of at least two domains, e.g. [\"example.com\", "
                                         "\"example.co.uk\"]")
        domains = tuple(d.strip().lower() for d in group)
        bad = [d for d in domains if not _DOMAIN.fullmatch(d)]
        if bad:
            raise ConfigError(name, key, f"{bad[0]!r} is not a domain name (no scheme, path or port)")
        same_site.append(domains)
    return ExtractConfig(same_site=tuple(same_site))


def _stories(raw: dict[str, Any], name: str) -> StoriesConfig:
    d = StoriesConfig()
    _no_unknown(raw, set(StoriesConfig.__dataclass_fields__), name, "stories")
    cfg = StoriesConfig(
        window_days=_positive(_get(raw, "window_days", float, name, "stories", d.window_days),
                              name, "stories.window_days"),
        threshold=_get(raw, "threshold", float, name, "stories", d.threshold),
        near_duplicate_threshold=_get(raw, "near_duplicate_threshold", float, name, "stories",
                                      d.near_duplicate_threshold),
    )
    for key in ("threshold", "near_duplicate_threshold"):
        if not 0.0 < getattr(cfg, key) <= 1.0:
            raise ConfigError(name, f"stories.{key}", "must be in (0, 1]")
    _within_limits(cfg, "stories", name)
    return cfg


def _stream(raw: dict[str, Any], name: str) -> StreamConfig:
    _no_unknown(raw, set(StreamConfig.__dataclass_fields__), name, "stream")
    cfg = StreamConfig(poll_interval=_positive(
        _get(raw, "poll_interval", float, name, "stream", StreamConfig.poll_interval), name, "stream.poll_interval"))
    _within_limits(cfg, "stream", name)
    return cfg


def _within_limits(cfg: Any, section: str, name: str) -> None:
    for f in cfg.__dataclass_fields__:
        limit = LIMITS.get(f"{section}.{f}")
        if limit is not None and getattr(cfg, f) > limit:
            raise ConfigError(name, f"{section}.{f}", f"must be at most {limit:g}, got {getattr(cfg, f)!r}")


def _table(doc: dict[str, Any], key: str, name: str) -> dict[str, Any]:
    value = doc.get(key, {})
    if not isinstance(value, dict):
        raise ConfigError(name, key, "must be a table")
    return value


def _no_unknown(table: dict[str, Any], known: set[str], name: str, prefix: str) -> None:
    for key in table:
        if key not in known:
            full = f"{prefix}.{key}" if prefix else key
            raise ConfigError(name, full, f"unknown key (expected one of: {', '.join(sorted(known))})")


def _get(table: dict[str, Any], key: str, kind: type, name: str, prefix: str, default: Any) -> Any:
    if key not in table:
        return default
    value = table[key]
    full = f"{prefix}.{key}" if prefix else key
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ConfigError(name, full, f"must be {kind.__name__}, got {type(value).__name__} {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(name, full, f"must be a finite number, got {value!r}")
    return value


def _positive(value: Any, name: str, key: str) -> Any:
    if value <= 0:
        raise ConfigError(name, key, f"must be positive, got {value!r}")
    return value


def _resolve(path: str, base_dir: Path) -> str:
    if "://" in path:  # a Beam filesystem URL such as gs://bucket/dir
        return path
    p = Path(path).expanduser()
    return str(p if p.is_absolute() else (base_dir / p).resolve())
