"""The ``nsg-forwarder`` command line: one entry point, one sub-command per job.

Exit codes scripts can rely on: 0 success; 1 the job failed (bad input, unreachable sink,
corrupt checkpoint, archive that does not verify, a file that cannot be read or written); 2 usage or
configuration error; 3 ``convert --strict`` skipped bad input; 130 interrupted.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from importlib import import_module

from forwarder import __version__

# Sub-command -> module, in --help order. Only the command being run is imported (with --help or no command,
# all are): `run` pulls in the Azure SDK and the sinks, which `convert` does not need and which would cost
# it half a second of start-up.
COMMANDS = {
    "run": "run_cmd",
    "validate": "validate_cmd",
    "convert": "convert_cmd",
    "backfill": "backfill_cmd",
    "checkpoints": "checkpoints_cmd",
    "sample": "sample_cmd",
    "verify-archive": "verify_cmd",
}


def version_text() -> str:
    from forwarder.flowlog.core import DESCRIPTION

    return f"%(prog)s {__version__} (core: {DESCRIPTION})"


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser for ``argv`` (the arguments after the program name); None: with every command."""
    parser = argparse.ArgumentParser(
        prog="nsg-forwarder",
        description="Forward Azure NSG and VNet flow logs as ECS, CEF or OCSF events to files, syslog, "
        "Splunk HEC, Elasticsearch or any HTTP endpoint, at least once, with per-blob checkpoints.",
        epilog="Exit codes: 0 ok, 1 the job failed, 2 usage or configuration error, 3 convert --strict skipped input, "
        "130 interrupted. Every command has --help.",
    )
    parser.add_argument("--version", action="version", version=version_text())
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    args = list(argv or [])
    first = next((a for a in args if not a.startswith("-")), None)
    wanted = [first] if first in COMMANDS and "-h" not in args[: args.index(first)] else list(COMMANDS)
    for name in wanted:
        import_module(f"forwarder.cli.{COMMANDS[name]}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser(sys.argv[1:] if argv is None else argv)
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
