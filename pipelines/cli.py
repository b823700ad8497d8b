"""Command line: parse argv, load the config, build and run; the only place that exits.

Exit status: 0 when the run completed (rejects are data, not failure), or the stream stopped as asked; 2 for
a bad command line, config or output location, with a message and no traceback; 75 (EX_TEMPFAIL) when
another run is writing the same output; 130 when a second stop signal aborted a stream's poll. Anything else
(1) means the output itself could not be written.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import io
import json
import logging
import math
import os
import re
import secrets
import signal
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, date, datetime
from importlib.metadata import PackageNotFoundError, version

# Importing Beam logs a warning about Google Cloud client libraries newsbeam does not use; it would be the
# first line of every run's output. Only that message is dropped.
logging.getLogger().addFilter(lambda record: not record.getMessage().startswith("apitools not found"))

import apache_beam as beam
import grpc
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.portability.api import beam_provision_api_pb2
from apache_beam.runners.portability.fn_api_runner import fn_runner
from apache_beam.runners.portability.portable_runner import JobServiceHandle
from apache_beam.runners.runner import PipelineRunner, PipelineState, create_runner

from pipelines.compact import CannotCompact, compact
from pipelines.config import Config, ConfigError, OutputConfig, load_config
from pipelines.datasets import Checked, NewerSchema, prepare
from pipelines.feeds import forget_feed_states, load_feed_states
from pipelines.lock import Locked, OutputLock
from pipelines.paths import delete, read_bytes, resolve_output, within, write_bytes
from pipelines.pipeline import build, state_dir
from pipelines.polls import polls_dir, started_dir, stop_file
from pipelines.records import Run
from pipelines.runners import CannotInstall, install_prism, prism_served, prism_version, with_installed_runner
from pipelines.sinks import temp_dir
from pipelines.stream import follow, run_stream
from pipelines.streaming import build_stream
from pipelines.summary import build_summary, counters_of, format_summary, save_summary, stored_anything
from schemas import SCHEMA_VERSION

FAILED = 1
USAGE_ERROR = 2
LOCKED = 75  # EX_TEMPFAIL: try again later
ABORTED = 130  # a stream's poll cut short by a second stop signal (128 + SIGINT; a batch run stopped by a
# signal exits 128 + its number)

# Runners seen to lose data, with the last Beam version they were checked on and what they lose. A newer Beam
# runs them with a warning until someone checks it; then the entry goes, or its version moves.
LOSES_DATA = {
    "daskrunner": ("2.77.0", "it merges a multi-output step's outputs, drops what finish_bundle emits (empty "
                             "Parquet files), runs only the last leaf transform and reports no metrics"),
}


class UsageError(Exception):
    pass


class Stopped(Exception):
    """A batch run stopped by a signal."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def newsbeam_version() -> str:
    try:
        return version("newsbeam")
    except PackageNotFoundError:  # run from a checkout that is not installed
        return "unknown"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="newsbeam",
        description="Ingest RSS/Atom feeds into Parquet: articles, stories and rejects.",
    )
    parser.add_argument("--version", action="version", version=f"newsbeam {newsbeam_version()} (schema "
                        f"{SCHEMA_VERSION}, Apache Beam {beam.__version__})")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser(
        "run",
        help="run one batch over the configured feeds",
        description=(
            "Run one batch: poll every feed of the config, fetch and extract new articles, assign them "
            "to stories and append articles/, stories/ and rejects/ under the output directory. Any "
            "further option (e.g. --runner, --direct_running_mode=multi_processing, "
            "--direct_num_workers=2) is passed to Apache Beam unchanged."
        ),
    )
    stream = sub.add_parser(
        "stream",
        help="poll the configured feeds every [stream] poll_interval seconds until stopped",
        description=(
            "Poll every feed of the config every [stream] poll_interval seconds, as one unbounded pipeline on "
            "Prism (or the streaming runner named; --runner=DirectRunner: a loop of batch runs in process); "
            "each poll stores what is new like a batch run and prints one summary line. Runs until SIGINT or "
            "SIGTERM (the polls started are committed first; a second signal cancels at once) or, with "
            "--polls, after that many polls. Further options are passed to Apache Beam unchanged."
        ),
    )
    install = sub.add_parser(
        "install-runners",
        help="install Beam's Prism runner for this Beam version (go install, into a cache outside the checkout)",
        description=(
            "Install the Prism runner at the installed Beam SDK's version with go install, into "
            "$NEWSBEAM_RUNNERS (default ~/.cache/newsbeam/runners). Does nothing when it is there already; "
            "runs need no network afterwards. newsbeam run --runner=PrismRunner then uses it."
        ),
    )
    compact_ = sub.add_parser(
        "compact",
        help="rewrite each partition older than [stories] window_days into one file",
        description=(
            "Rewrite the files of each dataset partition dated more than [stories] window_days ago into one "
            "file, exchanged atomically for readers (a local filesystem is needed). Takes the output's lock "
            "like a run."
        ),
    )
    for command in (run, stream, compact_):
        command.add_argument("--config", required=True, metavar="PATH", help="the TOML config file")
        command.add_argument("--output", metavar="DIR",
                             help="output directory or filesystem URL (overrides [output] path in the config)")
        command.add_argument("--debug", action="store_true",
                             help="print the traceback of a failure (otherwise one line, the traceback in a log file)")
    stream.add_argument("--polls", type=_positive_int, metavar="N", help="stop after N polls")
    install.set_defaults(own=[], debug=False)
    for command in (run, stream, compact_):  # for naming the closest option to an unknown one
        command.set_defaults(own=[o for a in command._actions for o in a.option_strings if o.startswith("--")])
    return parser


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, got {text!r}")
    return int(text)


def new_run() -> Run:
    now = datetime.now(UTC)
    return Run(run_id=f"{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}", started_at=now)


# What an output directory holds: its datasets, and beside them the run summaries, state, lock and files not
# yet committed, damaged files and compaction's replaced files.
OUTPUT_DIRS = ("articles", "stories", "rejects", "_runs", "_state", "_lock", "_tmp", "_damaged", "_compacting")


def prepare_output(path: str) -> None:
    """Fail early, with a usage error, when the output location cannot be written, or when what should be one
    of its directories is something else."""
    if "://" not in path:
        for name in OUTPUT_DIRS:
            if os.path.lexists(os.path.join(path, name)) and not os.path.isdir(os.path.join(path, name)):
                raise UsageError(f"output {path}: {name} is not a directory (newsbeam keeps its {name} there)")
    probe = f"{path.rstrip('/')}/_runs/.write-probe"
    try:
        with FileSystems.create(probe, compression_type="uncompressed") as f:
            f.write(b"ok")
    except Exception as e:  # filesystems raise their own error types
        raise UsageError(f"output {path}: not writable ({e})") from None
    finally:
        with contextlib.suppress(Exception):
            delete([probe])


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text)[:3])


def check_beam_options(beam_args: list[str], own: list[str]) -> str | None:
    """Options neither newsbeam (``own``) nor Beam knows, values Beam cannot parse, a ``--runner`` it cannot
    create and a runner known to lose data are usage errors found before any work (Beam itself would drop an
    unknown option with a warning and run anyway, or print its whole usage, or a traceback, once the run has
    started). Returns the ``--runner`` named, if any."""
    runner = _parse_beam_options(beam_args, [])  # values first: a runner module may define more options
    if runner is not None:
        known = LOSES_DATA.get(runner.rsplit(".", 1)[-1].lower())
        if known is not None:
            checked, what = known
            if _version(beam.__version__) <= _version(checked):
                raise UsageError(f"--runner={runner}: refused, it loses data with Beam {beam.__version__}: {what}")
            logging.getLogger(__name__).warning("%s lost data up to Beam %s (%s); not checked with %s", runner,
                                                checked, what, beam.__version__)
        try:
            create_runner(runner)
        except (ValueError, ImportError) as e:
            raise UsageError(f"--runner={runner}: {str(e).strip().rstrip(',')}") from None
    _parse_beam_options(beam_args, own)
    return runner


def _parse_beam_options(beam_args: list[str], own: list[str]) -> str | None:
    """Parse Beam's options as Beam does; the ``--runner`` they name. With ``own`` (newsbeam's options), an
    argument no option takes is a ``UsageError`` naming the closest known option."""
    errors, seen = io.StringIO(), {}

    def inspect(parser: argparse.ArgumentParser) -> None:  # Beam's parser, with every option it knows
        seen["options"] = [o for action in parser._actions for o in action.option_strings if o.startswith("--")]
        seen["unknown"] = parser.parse_known_args(beam_args)[1]

    try:
        with contextlib.redirect_stderr(errors):
            options = PipelineOptions(beam_args)
            options.get_all_options(add_extra_args_fn=inspect, retain_unknown_options=True)
    except SystemExit:  # argparse's way of rejecting a value: the last line says which
        lines = errors.getvalue().strip().splitlines() or ["invalid Beam option"]
        raise UsageError(lines[-1].split("error: ", 1)[-1]) from None
    unknown = seen.get("unknown", []) if own else []
    if unknown:
        raise _unknown(unknown[0], [*own, *seen["options"]])
    return options.view_as(StandardOptions).runner


def _unknown(argument: str, known: list[str]) -> UsageError:
    close = difflib.get_close_matches(argument.split("=", 1)[0], known, n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    return UsageError(f"unknown option {argument}{hint}; see newsbeam {{run,stream,compact}} --help and Beam's "
                      "pipeline options")


def run_batch(config: Config, beam_args: list[str], run: Run | None = None) -> dict:
    """Run one batch, holding the output's lock (``Locked`` if another run holds it), and return its
    summary (also saved)."""
    run = run or new_run()
    with OutputLock(config.output.path, run.run_id):
        summary = run_once(config, beam_args, run)
        save_summary(config.output.path, summary)
        return summary


STREAM_TIMEOUT = 10 * 365 * 86400  # seconds a stream's job-service calls may last
IN_PROCESS = {"directrunner"}  # runners that cannot run the unbounded pipeline: a stream on them is a loop of runs


def _runner_named(beam_args: list[str]) -> str | None:
    return PipelineOptions(beam_args).view_as(StandardOptions).runner


def stream(config: Config, beam_args: list[str], stop: threading.Event, polls: int | None = None,
           stream_run: Run | None = None) -> dict:
    """Poll until stopped (``pipelines.stream``), holding the output's lock throughout; returns the stream's
    summary. On Prism (when no runner is named) and other runners that stream, one unbounded pipeline; with
    ``--runner=DirectRunner``, a loop of bounded runs in process."""
    named = _runner_named(beam_args)
    if named is None:
        named, beam_args = "PrismRunner", with_installed_runner([*beam_args, "--runner=PrismRunner"], "PrismRunner")
    if named.rsplit(".", 1)[-1].lower() not in IN_PROCESS:
        return stream_unbounded(config, beam_args, stop, polls, stream_run)
    beam_args = [a for a in beam_args if not a.startswith("--runner")]  # run_once's own in-process runner
    stream_run = stream_run or new_run()
    output = config.output.path
    compacted_on: date | None = None  # see compact_daily

    def poll() -> dict:
        nonlocal compacted_on
        summary = {**run_once(config, beam_args, new_run()), "stream": stream_run.run_id}
        if stored_anything(summary):  # an idle poll adds no file: the stream's summary counts it
            save_summary(output, summary)
        compacted_on = compact_daily(config, compacted_on)
        return summary

    with OutputLock(output, stream_run.run_id):
        return run_stream(stream_run, output, config.stream.poll_interval, poll, stop, polls,
                          say=lambda line: print(line, flush=True))


def compact_daily(config: Config, compacted_on: date | None) -> date | None:
    """A stream holds the lock compaction needs, so it compacts the partitions older than the story window
    itself, once a UTC day (where the filesystem allows); returns the day it last did."""
    output, today = config.output.path, datetime.now(UTC).date()
    if "://" in output or compacted_on == today:
        return compacted_on
    with contextlib.suppress(CannotCompact):
        done = compact(output, config.stories.window_days, datetime.now(UTC), new_run().run_id)
        if done.partitions:
            print(f"compacted {_plural(done.partitions, 'partition')} older than {config.stories.window_days:g} "
                  f"days: {done.files_before} files -> {done.files_after}", flush=True)
    return today


def stream_unbounded(config: Config, beam_args: list[str], stop: threading.Event, polls: int | None = None,
                     stream_run: Run | None = None) -> dict:
    """The stream as one unbounded pipeline (``pipelines.streaming``) on a runner that streams, followed
    until it ends (``--polls``) or is stopped (``stop``); returns the stream's summary."""
    output = config.output.path
    first = new_run()
    start = datetime.fromtimestamp(math.ceil(first.started_at.timestamp()), UTC)  # polls start on a second
    stream_run = replace(stream_run or first, started_at=start,
                         poll_every=max(1, round(config.stream.poll_interval)))
    with OutputLock(output, stream_run.run_id):
        prepare(output, stream_run.run_id,
                forget_feeds=lambda: forget_feed_states(state_dir(output, "feeds"), stream_run.run_id))
        # the runner's job-service streams last as long as the job (by default they end after five minutes)
        timeout = [] if any(a.startswith("--job_server_timeout") for a in beam_args) else [
            f"--job_server_timeout={STREAM_TIMEOUT}"]
        quiet = contextlib.nullcontext() if _debugging() else \
            contextlib.redirect_stderr(_WithoutWorkerTracebacks(sys.stderr))
        with prism_served([*with_defaults(beam_args), *timeout, "--streaming"], show_logs=_debugging()) as args, \
                quiet:
            pipeline = beam.Pipeline(options=PipelineOptions(args))
            build_stream(pipeline, config, stream_run, polls)
            return _follow(config, stream_run, pipeline, stop, polls)


def _debugging() -> bool:
    """Whether the CLI runs with --debug."""
    return logging.getLogger("pipelines").isEnabledFor(logging.INFO)


def _follow(config: Config, stream_run: Run, pipeline: beam.Pipeline, stop: threading.Event,
            polls: int | None) -> dict:
    """Runs the stream's pipeline and follows it (``pipelines.stream.follow``) until it ends."""
    output = config.output.path
    result = pipeline.run()
    ended = threading.Event()
    failure: list[BaseException] = []

    def wait() -> None:
        try:
            result.wait_until_finish()
        except BaseException as e:  # reported by the main thread, unless the stream was cancelled
            failure.append(e)
        try:  # a runner's message stream may end before the job (a deadline): then the job's state tells
            while not PipelineState.is_terminal(result.state):
                time.sleep(1.0)
            if result.state == PipelineState.DONE:
                failure.clear()
        except Exception:  # the runner is gone: the job with it
            pass
        finally:
            ended.set()

    threading.Thread(target=wait, name="newsbeam-stream", daemon=True).start()
    polls_at, started_at = polls_dir(output, stream_run), started_dir(output, stream_run)
    compacted_on: date | None = None

    def new_polls() -> list[dict]:  # and, after the first poll of each day, compaction (beside the job: it
        nonlocal compacted_on  # rewrites only partitions older than the window, which polls do not write)
        fresh = sorted(m.path for m in FileSystems.match([within(polls_at, "*.json")])[0].metadata_list)
        summaries = [json.loads(read_bytes(path)) for path in fresh]
        # a poll followed leaves no file behind: what is listed next time is only what is new
        delete([f"{started_at}/{s['run_id']}" for s in summaries] + fresh)
        if fresh:
            compacted_on = compact_daily(config, compacted_on)
        return summaries

    def drained() -> bool:  # every poll started is committed and followed
        if not FileSystems.exists(stop_file(output, stream_run)):
            write_bytes(stop_file(output, stream_run), b"stop")
            return False  # a poll may be starting as the request is written: look again next time
        return not FileSystems.match([within(started_at, "*")])[0].metadata_list

    cancelled = threading.Event()

    def cancel() -> None:  # how a stream ends: its runner reports the job as cancelled, not as failed
        cancelled.set()
        with contextlib.suppress(Exception):  # a job that ended meanwhile
            result.cancel()

    try:
        summary = follow(stream_run, output, config.stream.poll_interval, ended.wait, new_polls, stop, drained,
                         cancel, polls, say=lambda line: print(line, flush=True))
    except KeyboardInterrupt:  # a second stop request: the poll under way is cut short
        cancel()
        raise
    if failure and not cancelled.is_set():
        raise failure[0]
    delete([temp_dir(output, stream_run.run_id)])
    return summary


class _WithoutWorkerTracebacks(io.TextIOBase):
    """stderr, without the tracebacks Beam's SDK workers print there (in process on Prism) about a failure the
    CLI reports in one line, its traceback in the log file."""

    def __init__(self, stream):
        self._stream, self._after_traceback = stream, False

    def write(self, text: str) -> int:
        dropped = text.startswith("Traceback (most recent call last):") or (self._after_traceback and text == "\n")
        self._after_traceback = text.startswith("Traceback (most recent call last):")
        return len(text) if dropped else self._stream.write(text)

    def flush(self) -> None:
        self._stream.flush()


def run_once(config: Config, beam_args: list[str], run: Run) -> dict:
    """One run of the pipeline; the caller holds the output's lock. Files a killed run left uncommitted are
    removed first, and the datasets' files checked (``pipelines.datasets``)."""
    output = config.output.path
    feeds_state = state_dir(output, "feeds")
    checked = prepare(output, run.run_id, forget_feeds=lambda: forget_feed_states(feeds_state, run.run_id))
    options = PipelineOptions(with_defaults(beam_args))
    runner = local_runner(options) if options.view_as(StandardOptions).runner is None else None
    pipeline = beam.Pipeline(runner=runner, options=options)
    build(pipeline, config, run, all_stories=checked.damaged("stories"))
    result = pipeline.run()
    result.wait_until_finish()
    summary = build_summary(counters_of(result), run, datetime.now(UTC), output, datasets=checked.as_dict(),
                            failing=failing_feeds(feeds_state))
    delete([temp_dir(output, run.run_id)])
    return summary


def failing_feeds(feeds_state: str) -> list[dict]:
    """The feeds whose last read failed, as the committed feed states record them."""
    states, _ = load_feed_states(feeds_state)
    return [{"url": s.feed_url, "reason": s.failing, "since": s.failing_since}
            for s in sorted(states.values(), key=lambda s: s.feed_url) if s.failing]


def with_defaults(beam_args: list[str]) -> list[str]:
    """The caller's Beam options; SDK workers log at WARNING, like the CLI, and Prism's job server its errors
    only, unless the caller chose a level."""
    defaults = {"--default_sdk_harness_log_level": "WARNING", "--prism_log_level": "error"}
    return [*beam_args, *(f"{k}={v}" for k, v in defaults.items() if not any(a.startswith(k) for a in beam_args))]


def local_runner(options: PipelineOptions) -> PipelineRunner:
    """The runner when none is given: Beam's FnApiRunner, in process (or in worker processes with
    ``--direct_running_mode=multi_processing``), handed the pipeline options its workers need as
    DirectRunner hands them. DirectRunner itself would first try to download the Prism runner from the
    internet, run on it where that works (not the runner the tests cover) and leave temporary directories."""
    encoded = JobServiceHandle.encode_pipeline_options(options.get_all_options())
    return fn_runner.FnApiRunner(provision_info=fn_runner.ExtendedProvisionInfo(
        beam_provision_api_pb2.ProvisionInfo(pipeline_options=encoded)))


NEXT = {  # what the next run does after a failed one, by command
    "run": "the next run removes what this one left uncommitted, recognises what it stored and fetches the rest "
           "again",
    "stream": "the next run or stream removes what the poll under way left uncommitted and continues from the "
              "last committed poll",
    "compact": "readers were not affected; the next compaction removes what this one left and starts again",
}


def main(argv: list[str] | None = None) -> int:
    args, beam_args = _parser().parse_known_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.debug:  # the tracebacks of elements that became internal_error rejects, too
        logging.getLogger("pipelines").setLevel(logging.INFO)
    else:  # a failure is one line, its traceback in a file: not Beam's logged tracebacks too
        for handler in logging.getLogger().handlers:
            handler.addFilter(_not_beams_errors)
        # a runner's job server (Prism) starting and stopping is not news
        logging.getLogger("apache_beam.utils.subprocess_server").setLevel(logging.ERROR)
        threading.excepthook = _without_runner_connections
    own = args.own
    if args.command == "install-runners":
        return _install_runners(beam_args)
    try:
        config = load_config(args.config)
        config = replace(config, output=OutputConfig(path=resolve_output(args.output or config.output.path)))
        if args.command == "compact" and beam_args:  # it takes no Beam options
            raise _unknown(beam_args[0], own)
        beam_args = with_installed_runner(beam_args, check_beam_options(beam_args, own))
        prepare_output(config.output.path)
    except ConfigError as e:
        print(f"newsbeam: config error: {e}", file=sys.stderr)
        return USAGE_ERROR
    except UsageError as e:
        print(f"newsbeam: {e}", file=sys.stderr)
        return USAGE_ERROR
    run = new_run()
    try:
        if args.command == "stream":
            return _stream_until_stopped(config, beam_args, args.polls, run)
        if args.command == "compact":
            return _compact(config, run)
        with _stopped_by_signals():
            summary = run_batch(config, beam_args, run)
    except Locked as e:
        print(f"newsbeam: {e}", file=sys.stderr)
        return LOCKED
    except NewerSchema as e:
        print(f"newsbeam: {e}", file=sys.stderr)
        return USAGE_ERROR
    except Stopped as e:
        print(f"newsbeam: run {run.run_id} stopped by {e} before it finished; {NEXT['run']}", file=sys.stderr)
        return 128 + e.signum
    except Exception as e:  # the output could not be written: one line, the traceback in a log file
        return _failed(args.command, run, config.output.path, e, args.debug)
    print(format_summary(summary))
    return 0


def _without_runner_connections(args: threading.ExceptHookArgs) -> None:
    """A thread's uncaught exception, unless it is a runner's connection closing as its job ends (Beam's
    threads reading from Prism): the CLI reports how the job ended."""
    if not isinstance(args.exc_value, grpc.RpcError):
        threading.__excepthook__(args)


def _not_beams_errors(record: logging.LogRecord) -> bool:
    """Drops the errors Beam, its Prism job server and SDK workers log about a failure newsbeam reports."""
    beams = record.name.startswith(("apache_beam", "PrismRunner", "SdkWorker")) or "apache_beam" in record.pathname
    return not (beams and record.levelno >= logging.ERROR)  # (a runner's job messages go to the root logger)


@contextlib.contextmanager
def _stopped_by_signals() -> Iterator[None]:
    """SIGINT and SIGTERM stop a batch run (``Stopped``, which the lock and the CLI clean up after); Beam's
    own handlers may turn the interruption into an error of theirs, so the signal is remembered too."""
    caught: list[int] = []

    def on_signal(signum: int, _frame) -> None:
        caught.append(signum)
        raise Stopped(signum)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    except Stopped:
        raise
    except BaseException:
        if caught:
            raise Stopped(caught[0]) from None
        raise
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def failure_line(error: BaseException) -> str:
    """What failed, in one line: the step, if Beam names one, and the innermost operating-system error (a full
    disk, lost permissions), else the exception's type and first line."""
    found: list[BaseException] = []
    pending: list[BaseException | None] = [error]
    while pending:  # causes, contexts, and what Beam's I/O errors and wrappers hold
        item = pending.pop()
        if item is None or any(item is e for e in found):
            continue
        found.append(item)
        details = getattr(item, "exception_details", None)
        held = details.values() if isinstance(details, dict) else ()
        pending += [item.__cause__, item.__context__,
                    *(e for e in (*item.args, *held) if isinstance(e, BaseException))]
    text = " ".join(str(e) for e in found)
    os_error = next((e for e in reversed(found) if isinstance(e, OSError) and e.strerror), None)
    reported = re.findall(r"\[Errno \d+\] ([^:'\n\[]+)(?:: '([^'\n]+)')?", text)  # a runner's report, as text
    if os_error is not None:
        what = f"{os_error.strerror}" + (f": {os_error.filename}" if os_error.filename else "")
    elif reported:
        what = reported[-1][0].strip() + (f": {reported[-1][1]}" if reported[-1][1] else "")
    else:
        first = (str(error).strip().splitlines() or [""])[0]
        what = f"{type(error).__name__}: {first}"[:300]
    steps = re.findall(r"while running '([^'/]+)", text)
    return (f" in {steps[-1]}" if steps else "") + f": {what}"


def _failed(command: str, run: Run, output: str, error: BaseException, debug: bool) -> int:
    details = "".join(traceback.format_exception(error))
    if debug:
        print(details, file=sys.stderr)
        where = "above"
    else:
        where = _save_traceback(output, run.run_id, details)
    print(f"newsbeam: {command} {run.run_id} failed{failure_line(error)}; {NEXT[command]} "
          f"(traceback: {where})", file=sys.stderr)
    return FAILED


def _save_traceback(output: str, run_id: str, details: str) -> str:
    """The traceback, in ``_runs/<run_id>.error.txt`` beside the output, else (a full disk) in a temporary
    file; where it went."""
    path = f"{output.rstrip('/')}/_runs/{run_id}.error.txt"
    try:
        with FileSystems.create(path, compression_type="uncompressed") as f:
            f.write(details.encode())
        return path
    except Exception:  # the output is what failed: the local temporary directory may do
        with contextlib.suppress(Exception):
            delete([path])
        with tempfile.NamedTemporaryFile("w", prefix=f"newsbeam-{run_id}-", suffix=".txt", delete=False) as tmp:
            tmp.write(details)
        return tmp.name


def _install_runners(extra: list[str]) -> int:
    if extra:
        print(f"newsbeam: {_unknown(extra[0], [])}", file=sys.stderr)
        return USAGE_ERROR
    try:
        path, installed = install_prism()
    except CannotInstall as e:
        print(f"newsbeam: install-runners: {e}", file=sys.stderr)
        return FAILED
    print(f"prism {prism_version()}: {'installed' if installed else 'already installed'} at {path}")
    return 0


def _compact(config: Config, run: Run) -> int:
    output = config.output.path
    try:
        with OutputLock(output, run.run_id):
            checked = prepare(output, run.run_id, lambda: forget_feed_states(state_dir(output, "feeds"), run.run_id))
            done = compact(output, config.stories.window_days, run.started_at, run.run_id)
            delete([temp_dir(output, run.run_id)])
    except CannotCompact as e:
        print(f"newsbeam: compact: {e}", file=sys.stderr)
        return USAGE_ERROR
    print(compact_report(run.run_id, config.stories.window_days, checked, done))
    return 0


def _plural(n: int, one: str, many: str | None = None) -> str:
    return f"{n} {one if n == 1 else many or one + 's'}"


def compact_report(run_id: str, window_days: float, checked: Checked, done) -> str:
    datasets = ", ".join(f"{name} {before} -> {after}" for name, (before, after) in done.by_dataset.items())
    lines = [f"newsbeam compact {run_id}: {_plural(done.partitions, 'partition')} older than {window_days:g} days "
             f"compacted, {_plural(done.rows, 'row')}; files {datasets}"]
    if done.single:
        lines.append(f"  {_plural(done.single, 'older partition')} already one file each, left as "
                     f"{'it is' if done.single == 1 else 'they are'}")
    if sum(checked.upgraded.values()):
        lines.append(f"  {_plural(sum(checked.upgraded.values()), 'file')} of older schema versions rewritten to "
                     f"schema {SCHEMA_VERSION}")
    lines += [f"  damaged, set aside in _damaged/: {path}" for path in checked.set_aside]
    lines += [f"  left as it is: {skipped}" for skipped in done.skipped]
    return "\n".join(lines)


def _stream_until_stopped(config: Config, beam_args: list[str], polls: int | None, run: Run) -> int:
    """The stream, stopped by the first SIGINT or SIGTERM after its poll under way, aborted by a second."""
    stop = threading.Event()

    def on_signal(signum: int, _frame) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        print(f"newsbeam: {signal.Signals(signum).name}: stopping once the poll under way has committed "
              "(again to abort it)", file=sys.stderr, flush=True)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        summary = stream(config, beam_args, stop, polls, run)
    except KeyboardInterrupt:
        print(f"newsbeam: stream aborted during a poll; {NEXT['stream']}", file=sys.stderr)
        return ABORTED
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    sys.stdout.flush()
    print(f"newsbeam stream {summary['run_id']} stopped ({summary['stopped_by']}) after {summary['polls']} "
          f"polls, {summary['seconds']:.1f}s -> {summary['output']}"
          + ("" if summary["reconciled"] is not False else "  ** DOES NOT RECONCILE **"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
