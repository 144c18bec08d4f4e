"""The ``nsg-forwarder`` command line: one entry point, one sub-command per job.

Exit codes scripts can rely on: 0 success; 1 the job failed (bad input, unreachable sink,
corrupt checkpoint, archive that does not verify, a file that cannot be read or written); 2 usage or
configuration error; 3 ``convert --strict`` skipped bad input; 130 interrupted.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from forwarder import __version__
from forwarder.cli import (
    backfill_cmd,
    checkpoints_cmd,
    convert_cmd,
    run_cmd,
    sample_cmd,
    validate_cmd,
    verify_cmd,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nsg-forwarder",
        description="Forward Azure NSG and VNet flow logs as ECS, CEF or OCSF events to files, syslog, "
        "Splunk HEC, Elasticsearch or any HTTP endpoint, at least once, with per-blob checkpoints.",
        epilog="Exit codes: 0 ok, 1 the job failed, 2 usage or configuration error, 3 convert --strict skipped input, "
        "130 interrupted. Every command has --help.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run_cmd.register(sub)
    validate_cmd.register(sub)
    convert_cmd.register(sub)
    backfill_cmd.register(sub)
    checkpoints_cmd.register(sub)
    sample_cmd.register(sub)
    verify_cmd.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.handler(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader of our stdout went away (| head): not an error of ours.
        sys.stderr.close()
        return 0
    except OSError as exc:
        # A file or folder the command needs cannot be used: say which, in one line (commands report the
        # cases they expect themselves; this is the net under the others).
        where = f" {exc.filename}:" if exc.filename else ""
        print(f"nsg-forwarder {args.command}:{where} {exc.strerror or exc}", file=sys.stderr)
        return 1
    return code
