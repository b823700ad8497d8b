from pathlib import Path

import pytest

from pipelines.config import ConfigError, load_config
from tests.conftest import FIXTURES_CONFIG


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.toml"
    path.write_text(text)
    return path


def test_fixtures_config_loads_with_paths_resolved_against_the_file():
    config = load_config(FIXTURES_CONFIG)
    assert len(config.feeds) == 7
    assert all(Path(f.location).is_absolute() and Path(f.location).parent.name == "feeds" for f in config.feeds)
    # a local feed is named as the config names it, the same in every checkout
    assert config.feeds[0].url == "../fixtures/feeds/ledger.xml" and config.feeds[0].source == config.feeds[0].location
    assert config.fetch.replay.endswith("fixtures/replay.toml")
    assert config.fetch.allow_private_addresses is False
    assert config.output.path.endswith("out/fixtures")


def test_defaults_and_types(tmp_path):
    config = load_config(write(tmp_path, """
[[feeds]]
url = "https://news.example/rss"
[fetch]
timeout = 5
max_bytes = 1000
[stories]
window_days = 2
[stream]
poll_interval = 60
"""))
    assert config.feeds[0].url == "https://news.example/rss"
    assert config.fetch.timeout == 5.0 and config.fetch.max_bytes == 1000
    assert config.stories.window_days == 2.0
    assert config.stream.poll_interval == 60.0
    assert config.output.path == str((tmp_path / "out").resolve())


def test_file_url_is_read_from_its_path(tmp_path):
    config = load_config(write(tmp_path, '[[feeds]]\nurl = "file:///srv/feeds/a.xml"\n'))
    assert config.feeds[0].url == "file:///srv/feeds/a.xml" and config.feeds[0].source == "/srv/feeds/a.xml"


def test_a_local_feed_is_named_by_its_normalised_path_as_written(tmp_path):
    config = load_config(write(tmp_path, '[[feeds]]\nurl = "./feeds/../feeds/a.xml"\n[[feeds]]\nurl = "/srv/b.xml"\n'
                                         '[[feeds]]\nurl = "https://c.example/rss"\n'))
    assert [(f.url, f.source) for f in config.feeds] == [
        ("feeds/a.xml", str(tmp_path / "feeds" / "a.xml")), ("/srv/b.xml", "/srv/b.xml"),
        ("https://c.example/rss", "https://c.example/rss")]


@pytest.mark.parametrize("text, key, problem", [
    ('[[feeds]]\nurl = "ftp://x.example/feed"\n', "feeds[0].url", "only http(s) URLs"),
    ('[[feeds]]\nurl = "https://"\n', "feeds[0].url", "has no host"),
    ('[[feeds]]\nurl = "http://[::1/feed"\n', "feeds[0].url", "not a valid URL"),
    ('[[feeds]]\nurl = "https://a.example/f"\nnmae = "typo"\n', "feeds[0].nmae", "unknown key"),
    ('[[feeds]]\nurl = "https://a.example/f"\n[fetch]\ntimeout = "fast"\n', "fetch.timeout", "must be float"),
    ('[[feeds]]\nurl = "https://a.example/f"\n[fetch]\ntimeout = -1\n', "fetch.timeout", "must be positive"),
    ('[[feeds]]\nurl = "https://a.example/f"\n[fetch]\nallow_private_addresses = 1\n',
     "fetch.allow_private_addresses", "must be bool"),
    ('[[feeds]]\nurl = "https://a.example/f"\n[fetch]\nreplay = "nope.toml"\n', "fetch.replay", "does not exist"),
    ('[[feeds]]\nurl = "https://a.example/f"\n[stories]\nthreshold = 1.5\n', "stories.threshold", "(0, 1]"),
    ('[[feeds]]\nurl = "https://a.example/f"\n[outptu]\npath = "x"\n', "outptu", "unknown key"),
    ('[fetch]\ntimeout = 3\n', "feeds", "at least one [[feeds]]"),
    ('[[feeds]]\nurl = "https://a.example/f"\n[fetch]\ntimeout = nan\n', "fetch.timeout", "finite"),
    ('[[feeds]]\nurl = "https://a.example/f"\n[fetch]\nbackoff = inf\n', "fetch.backoff", "finite"),
    ('[[feeds]]\nurl = "https://a.example/f"\n[stories]\nwindow_days = -inf\n', "stories.window_days", "finite"),
    ('[[feeds]]\nurl = "https://a.example/f"\n[fetch]\nretries = 100000000000\n', "fetch.retries", "at most 10"),
    ('[[feeds]]\nurl = "https://a.example/f"\n[fetch]\nretries = 1e11\n', "fetch.retries", "must be int"),
    ('[[feeds]]\nurl = "https://a.example/f"\n[fetch]\ntimeout = 86400000\n', "fetch.timeout", "at most 3600"),
    ('[[feeds]]\nurl = "https://a.example/f"\n[fetch]\nmax_bytes = 10000000000\n', "fetch.max_bytes", "at most"),
    ('[[feeds]]\nurl = "https://a.example/f"\n[stream]\npoll_interval = 0\n', "stream.poll_interval",
     "must be positive"),
    ('[[feeds]]\nurl = "https://a.example/f"\n[stream]\npoll_interval = nan\n', "stream.poll_interval", "finite"),
    ('[[feeds]]\nurl = "https://a.example/f"\n[stream]\npoll_interval = 3e8\n', "stream.poll_interval", "at most"),
    ('[[feeds]]\nurl = "https://a.example/f"\n[stream]\npoll = 5\n', "stream.poll", "unknown key"),
    ('[[feeds]]\nurl = "https://a.example/f"\n[fetch]\nuser_agent = "bot\\nX-Evil: 1"\n', "fetch.user_agent",
     "printable ASCII"),
])
def test_bad_config_names_file_key_and_problem(tmp_path, text, key, problem):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert err.value.key == key
    assert problem in err.value.problem
    assert str(path) in str(err.value) and key in str(err.value)


def test_missing_file_and_bad_toml(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "absent.toml")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_config(write(tmp_path, "[[feeds]\nurl = 1"))


OPML = """<?xml version="1.0"?><opml version="2.0"><head><title>subs</title></head><body>
<outline text="News"><outline text="Ledger" title="The Daily Ledger" type="rss" xmlUrl="https://ledger.example/rss"/>
<outline text="Local" xmlUrl="feeds/local.xml"/></outline>
<outline text="a folder without feeds"/></body></opml>"""


def test_opml_lists_feeds(tmp_path):
    (tmp_path / "subs.opml").write_text(OPML)
    config = load_config(write(tmp_path, '[[feeds]]\nopml = "subs.opml"\n[[feeds]]\nurl = "https://b.example/f"\n'))
    assert [(f.url, f.name, f.source) for f in config.feeds] == [
        ("https://ledger.example/rss", "The Daily Ledger", "https://ledger.example/rss"),
        ("feeds/local.xml", "Local", str(tmp_path / "feeds" / "local.xml")),
        ("https://b.example/f", None, "https://b.example/f")]


@pytest.mark.parametrize("opml, problem", [
    (None, "cannot read OPML file"),
    ("<opml><body><outline", "not well-formed OPML"),
    ("<rss/>", "is not OPML"),
    ("<opml><body><outline text='x'/></body></opml>", "lists no feeds"),
    ("<opml><body><outline xmlUrl='gopher://x.example/'/></body></opml>", "only http(s) URLs"),
])
def test_bad_opml_names_the_config_key_and_the_file(tmp_path, opml, problem):
    if opml is not None:
        (tmp_path / "subs.opml").write_text(opml)
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, '[[feeds]]\nopml = "subs.opml"\n'))
    assert err.value.key.startswith("feeds[0].opml") and problem in err.value.problem


def test_feed_table_needs_exactly_one_source(tmp_path):
    with pytest.raises(ConfigError, match="exactly one of url or opml"):
        load_config(write(tmp_path, '[[feeds]]\nurl = "https://a.example/f"\nopml = "s.opml"\n'))


@pytest.mark.parametrize("manifest, problem", [
    ("[[response]\nurl = 1", "invalid TOML"),
    ("[[response]]\nfile = 'a.html'\n", "response[0].url: is required"),
    ("[[response]]\nurl = 'https://a.example/'\nstatus = 999\n", "response[0].status: must be an HTTP status"),
    ("[[response]]\nurl = 'https://a.example/'\nfile = 'absent.html'\n", "response[0].file"),
    ("[[respnse]]\nurl = 'https://a.example/'\n", "respnse: unknown key"),
    ("[[response]]\nurl = 'https://a.example/'\nstatus = '200'\n", "response[0].status: must be int"),
])
def test_a_bad_replay_manifest_is_a_config_error_naming_both_files(tmp_path, manifest, problem):
    (tmp_path / "replay.toml").write_text(manifest)
    path = write(tmp_path, '[[feeds]]\nurl = "https://a.example/f"\n[fetch]\nreplay = "replay.toml"\n')
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert err.value.key == "fetch.replay" and str(tmp_path / "replay.toml") in err.value.problem
    assert problem in err.value.problem and "\n" not in str(err.value)
