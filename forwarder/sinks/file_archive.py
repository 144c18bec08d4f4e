"""The compliance archive on disk: closed-file names, the SHA-256 manifest, and its verification.

A closed file is named ``<stem>-<UTC time>Z-<sequence><suffix>[.gz]``. Every line in it was written
before that time; the sequence number (never reused in a directory) orders the files. Closed files
are read-only and never rewritten. ``MANIFEST.sha256`` beside them lists each closed file in
``sha256sum`` format, so ``cd DIR && sha256sum -c MANIFEST.sha256`` checks the archive with stock
tools; ``verify_archive`` also finds closed files the manifest does not list.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

MANIFEST_NAME = "MANIFEST.sha256"
TMP_SUFFIX = ".tmp"
READ_CHUNK = 1 << 20

# Any closed file of any stem: what verify treats as "belongs in the manifest".
_ANY_CLOSED = re.compile(r"^.+-\d{8}T\d{6}Z-\d{6,}(?:\.[^./]+)*$")
_MANIFEST_LINE = re.compile(r"^([0-9a-fA-F]{64}) [ *](.+)$")


def timestamp(epoch: float) -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(epoch))


@dataclass(frozen=True)
class Naming:
    """Names of the closed files that belong to one active file (its stem and suffix)."""

    stem: str  # "flows" for flows.ndjson
    suffix: str  # ".ndjson" ("" if the active file has none)

    @classmethod
    def for_active(cls, active: Path) -> Naming:
        return cls(active.stem if active.suffix else active.name, active.suffix)

    @property
    def pattern(self) -> re.Pattern[str]:
        return re.compile(
            rf"^{re.escape(self.stem)}-(?P<ts>\d{{8}}T\d{{6}}Z)-(?P<seq>\d{{6,}}){re.escape(self.suffix)}(?P<gz>\.gz)?$"
        )

    def closed(self, epoch: float, seq: int) -> str:
        return f"{self.stem}-{timestamp(epoch)}-{seq:06d}{self.suffix}"

    def seq(self, name: str) -> int | None:
        """The sequence number of one of our closed (or half-finished temp) files, None if not ours."""
        if name.startswith(".") and name.endswith(TMP_SUFFIX):
            name = name[1 : -len(TMP_SUFFIX)]
        m = self.pattern.match(name)
        return int(m["seq"]) if m else None


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(READ_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def fsync_dir(directory: Path) -> None:
    """Make renames, creations and removals in ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass(frozen=True, slots=True)
class ManifestEntry:
    digest: str
    name: str
    line: int


def read_manifest(path: Path) -> tuple[list[ManifestEntry], list[str]]:
    """Entries and problems (malformed lines, a torn last line) of a manifest; no manifest is empty."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return [], []
    entries: list[ManifestEntry] = []
    problems: list[str] = []
    text = raw.decode("utf-8", "replace")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    elif lines:
        problems.append(f"{path.name} line {len(lines)}: last line is incomplete (no newline)")
    for n, line in enumerate(lines, 1):
        m = _MANIFEST_LINE.match(line)
        if not m:
            problems.append(f"{path.name} line {n}: not a sha256sum line: {line[:120]!r}")
            continue
        name = m[2]
        if "/" in name or name in (".", ".."):
            problems.append(f"{path.name} line {n}: entry must be a file name in the same directory: {name!r}")
            continue
        entries.append(ManifestEntry(m[1].lower(), name, n))
    return entries, problems


def append_manifest(path: Path, digest: str, name: str) -> None:
    """One line, one write, O_APPEND, fsync: a reader never sees half an entry after this returns."""
    created = not path.exists()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    try:
        os.write(fd, f"{digest}  {name}\n".encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    if created:
        fsync_dir(path.parent)


@dataclass
class VerifyReport:
    directory: Path
    verified: list[str] = field(default_factory=list)  # listed and matching
    missing: list[str] = field(default_factory=list)  # listed, not on disk
    altered: list[str] = field(default_factory=list)  # listed, different content
    unlisted: list[str] = field(default_factory=list)  # closed files the manifest does not list
    incomplete: list[str] = field(default_factory=list)  # leftover temp files of an interrupted rotation
    manifest_problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.altered or self.unlisted or self.incomplete or self.manifest_problems)

    def problems(self) -> list[str]:
        out = list(self.manifest_problems)
        out += [f"MISSING {n}" for n in self.missing]
        out += [f"ALTERED {n}" for n in self.altered]
        out += [f"UNLISTED {n}" for n in self.unlisted]
        out += [f"INCOMPLETE {n}" for n in self.incomplete]
        return out


def verify_archive(directory: Path) -> VerifyReport:
    """Recompute the SHA-256 of every file the manifest lists; report missing, altered and unlisted files."""
    directory = Path(directory)
    report = VerifyReport(directory)
    manifest = directory / MANIFEST_NAME
    if not manifest.exists():
        report.manifest_problems.append(f"{MANIFEST_NAME}: not found in {directory}")
    entries, problems = read_manifest(manifest)
    report.manifest_problems += problems
    expected: dict[str, set[str]] = {}
    for e in entries:
        expected.setdefault(e.name, set()).add(e.digest)
    for name, digests in expected.items():
        if len(digests) > 1:
            report.manifest_problems.append(f"{MANIFEST_NAME}: {name} is listed with {len(digests)} different digests")
        path = directory / name
        try:
            actual = sha256_file(path)
        except FileNotFoundError:
            report.missing.append(name)
            continue
        (report.verified if actual in digests and len(digests) == 1 else report.altered).append(name)
    for entry in sorted(os.scandir(directory), key=lambda d: d.name):
        if not entry.is_file(follow_symlinks=False):
            continue
        name = entry.name
        if name.startswith(".") and name.endswith(TMP_SUFFIX) and _ANY_CLOSED.match(name[1 : -len(TMP_SUFFIX)]):
            report.incomplete.append(name)
        elif not name.startswith(".") and _ANY_CLOSED.match(name) and name not in expected:
            report.unlisted.append(name)
    return report


def main_verify(argv: Sequence[str] | None = None) -> int:
    """``nsg-forwarder verify-archive DIR``: one line per problem, a summary; exit 0 if all good, 1 otherwise."""
    parser = argparse.ArgumentParser(
        prog="nsg-forwarder verify-archive",
        description="Check a file sink's archive directory against its MANIFEST.sha256: every listed file "
        "present with the recorded SHA-256, and no closed file left out of the manifest.",
    )
    parser.add_argument("directory", type=Path, help="the directory holding the closed files and MANIFEST.sha256")
    args = parser.parse_args(argv)
    directory: Path = args.directory
    if not directory.is_dir():
        print(f"verify-archive: not a directory: {directory}", file=sys.stderr)
        return 1
    report = verify_archive(directory)
    for problem in report.problems():
        print(problem)
    n_problems = len(report.problems())
    print(
        f"{'OK' if report.ok else 'FAILED'}: {len(report.verified)} files verified, {len(report.missing)} missing, "
        f"{len(report.altered)} altered, {len(report.unlisted)} unlisted, {len(report.incomplete)} incomplete, "
        f"{n_problems} problems in {directory}"
    )
    return 0 if report.ok else 1


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main_verify())
