"""Command line: parse argv, load the config, build and run; the only place that exits.

Exit status: 0 when the run completed (rejects are data, not failure), or the stream stopped as asked; 2 for
a bad command line, config or output location, with a message and no traceback; 75 (EX_TEMPFAIL) when
another run is writing the same output; 130 when a second stop signal aborted a stream's poll. Anything else
(1) means the output itself could not be written.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import re
import secrets
import signal
import sys
import threading
from dataclasses import replace
from datetime import UTC, datetime

# Importing Beam logs a warning about Google Cloud client libraries newsbeam does not use; it would be the
# first line of every run's output. Only that message is dropped.
logging.getLogger().addFilter(lambda record: not record.getMessage().startswith("apitools not found"))

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.portability.api import beam_provision_api_pb2
from apache_beam.runners.portability.fn_api_runner import fn_runner
from apache_beam.runners.portability.portable_runner import JobServiceHandle
from apache_beam.runners.runner import PipelineRunner, create_runner

from pipelines.compact import CannotCompact, compact
from pipelines.config import Config, ConfigError, OutputConfig, load_config
from pipelines.lock import Locked, OutputLock
from pipelines.pipeline import build
from pipelines.records import Run
from pipelines.sinks import discard_uncommitted, temp_dir
from pipelines.stream import run_stream
from pipelines.summary import build_summary, counters_of, format_summary, save_summary

USAGE_ERROR = 2
LOCKED = 75  # EX_TEMPFAIL: try again later
ABORTED = 130  # a stream's poll cut short by a second stop signal

# Runners seen to lose data, with the last Beam version they were checked on and what they lose. A newer Beam
# runs them with a warning until someone checks it; then the entry goes, or its version moves.
LOSES_DATA = {
    "daskrunner": ("2.77.0", "it merges a multi-output step's outputs, drops what finish_bundle emits (empty "
                             "Parquet files), runs only the last leaf transform and reports no metrics"),
}


class UsageError(Exception):
    pass


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="newsbeam",
        description="Ingest RSS/Atom feeds into Parquet: articles, stories and rejects.",
    )
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
            "Poll every feed of the config every [stream] poll_interval seconds; each poll stores what is "
            "new like a batch run and prints one summary line. Runs until SIGINT or SIGTERM (the poll under "
            "way is finished first; a second signal aborts it) or, with --polls, after that many polls. "
            "Further options are passed to Apache Beam unchanged."
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
    stream.add_argument("--polls", type=_positive_int, metavar="N", help="stop after N polls")
    return parser


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, got {text!r}")
    return int(text)


def new_run() -> Run:
    now = datetime.now(UTC)
    return Run(run_id=f"{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}", started_at=now)


def prepare_output(path: str) -> None:
    """Fail early, with a usage error, when the output location cannot be written."""
    probe = f"{path.rstrip('/')}/_runs/.write-probe"
    try:
        with FileSystems.create(probe, compression_type="uncompressed") as f:
            f.write(b"ok")
        FileSystems.delete([probe])
    except Exception as e:  # filesystems raise their own error types
        raise UsageError(f"output {path}: not writable ({e})") from None


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text)[:3])


def check_beam_options(beam_args: list[str]) -> None:
    """Beam options Beam cannot parse, a ``--runner`` it cannot create and a runner known to lose data are
    usage errors found before any work (Beam itself would print its whole usage, or a traceback, once the
    run has started)."""
    errors = io.StringIO()
    try:
        with contextlib.redirect_stderr(errors):
            PipelineOptions(beam_args).get_all_options()
    except SystemExit:  # argparse's way of rejecting a value: the last line says which
        lines = errors.getvalue().strip().splitlines() or ["invalid Beam option"]
        raise UsageError(lines[-1].split("error: ", 1)[-1]) from None
    runner = PipelineOptions(beam_args).view_as(StandardOptions).runner
    if runner is None:
        return
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


def run_batch(config: Config, beam_args: list[str], run: Run | None = None) -> dict:
    """Run one batch, holding the output's lock (``Locked`` if another run holds it), and return its
    summary (also saved)."""
    run = run or new_run()
    with OutputLock(config.output.path, run.run_id):
        return run_once(config, beam_args, run)


def stream(config: Config, beam_args: list[str], stop: threading.Event, polls: int | None = None) -> dict:
    """Poll until stopped (``pipelines.stream``), holding the output's lock throughout; returns the stream's
    summary."""
    stream_run = new_run()
    output = config.output.path
    compacted_on = None  # the stream holds the lock compaction needs, so it compacts old partitions itself,
    # after its first poll of each day (where the filesystem allows it)

    def poll() -> dict:
        nonlocal compacted_on
        summary = run_once(config, beam_args, new_run())
        today = datetime.now(UTC).date()
        if "://" not in output and compacted_on != today:
            compacted_on = today
            with contextlib.suppress(CannotCompact):
                done = compact(output, config.stories.window_days, datetime.now(UTC), new_run().run_id)
                if done.partitions:
                    print(f"compacted {done.partitions} partitions older than {config.stories.window_days:g} "
                          f"days: {done.files_before} files -> {done.files_after}", flush=True)
        return summary

    with OutputLock(output, stream_run.run_id):
        return run_stream(stream_run, output, config.stream.poll_interval, poll, stop, polls,
                          say=lambda line: print(line, flush=True))


def run_once(config: Config, beam_args: list[str], run: Run) -> dict:
    """One run of the pipeline; the caller holds the output's lock. Files a killed run left uncommitted are
    removed first."""
    output = config.output.path
    discard_uncommitted(output)
    options = PipelineOptions(with_defaults(beam_args))
    runner = local_runner(options) if options.view_as(StandardOptions).runner is None else None
    pipeline = beam.Pipeline(runner=runner, options=options)
    build(pipeline, config, run)
    result = pipeline.run()
    result.wait_until_finish()
    summary = build_summary(counters_of(result), run, datetime.now(UTC), output)
    save_summary(output, summary)
    if FileSystems.exists(temp_dir(output, run.run_id)):
        FileSystems.delete([temp_dir(output, run.run_id)])
    return summary


def with_defaults(beam_args: list[str]) -> list[str]:
    """The caller's Beam options; SDK workers log at WARNING, like the CLI, unless the caller chose a level."""
    if any(a.startswith("--default_sdk_harness_log_level") for a in beam_args):
        return list(beam_args)
    return [*beam_args, "--default_sdk_harness_log_level=WARNING"]


def local_runner(options: PipelineOptions) -> PipelineRunner:
    """The runner when none is given: Beam's FnApiRunner, in process (or in worker processes with
    ``--direct_running_mode=multi_processing``), handed the pipeline options its workers need as
    DirectRunner hands them. DirectRunner itself would first try to download the Prism runner from the
    internet, run on it where that works (not the runner the tests cover) and leave temporary directories."""
    encoded = JobServiceHandle.encode_pipeline_options(options.get_all_options())
    return fn_runner.FnApiRunner(provision_info=fn_runner.ExtendedProvisionInfo(
        beam_provision_api_pb2.ProvisionInfo(pipeline_options=encoded)))


def main(argv: list[str] | None = None) -> int:
    args, beam_args = _parser().parse_known_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        config = load_config(args.config)
        if args.output:
            config = replace(config, output=OutputConfig(path=args.output))
        if args.command == "compact" and beam_args:
            raise UsageError(f"compact: unrecognized arguments: {' '.join(beam_args)}")
        check_beam_options(beam_args)
        prepare_output(config.output.path)
    except ConfigError as e:
        print(f"newsbeam: config error: {e}", file=sys.stderr)
        return USAGE_ERROR
    except UsageError as e:
        print(f"newsbeam: {e}", file=sys.stderr)
        return USAGE_ERROR
    try:
        if args.command == "stream":
            return _stream_until_stopped(config, beam_args, args.polls)
        if args.command == "compact":
            return _compact(config)
        summary = run_batch(config, beam_args)
    except Locked as e:
        print(f"newsbeam: {e}", file=sys.stderr)
        return LOCKED
    print(format_summary(summary))
    return 0


def _compact(config: Config) -> int:
    run = new_run()
    try:
        with OutputLock(config.output.path, run.run_id):
            done = compact(config.output.path, config.stories.window_days, run.started_at, run.run_id)
    except CannotCompact as e:
        print(f"newsbeam: compact: {e}", file=sys.stderr)
        return USAGE_ERROR
    datasets = ", ".join(f"{name} {before} -> {after}" for name, (before, after) in done.by_dataset.items())
    print(f"newsbeam compact {run.run_id}: {done.partitions} partitions older than "
          f"{config.stories.window_days:g} days, {done.rows} rows; files {datasets}")
    for skipped in done.skipped:
        print(f"  left as it is: {skipped}")
    return 0


def _stream_until_stopped(config: Config, beam_args: list[str], polls: int | None) -> int:
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
        summary = stream(config, beam_args, stop, polls)
    except KeyboardInterrupt:
        print("newsbeam: stream aborted during a poll; the next run or stream clears up after it", file=sys.stderr)
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
