"""Realistic formatted events for the HTTP sink tests and benchmark: generator -> decoder -> normaliser -> formatter."""

from __future__ import annotations

from dataclasses import replace

from forwarder.flowlog.issues import IssueLog
from forwarder.flowlog.model import FlowEvent
from forwarder.flowlog.normalise import Normaliser
from forwarder.flowlog.records import RecordDecoder
from forwarder.formats import formatter
from forwarder.samples.generator import HEAD, TAIL, BlobSpec, blob_bytes, sample_specs
from forwarder.sinks.base import Batch


def sample_events(tuples_per_minute: int = 10, minutes: int = 10, hours: int = 1, seed: int = 1) -> list[FlowEvent]:
    """Events of the sample estate (NSG v1 and v2, VNet v4), in blob order."""
    events: list[FlowEvent] = []
    for spec in sample_specs(hours=hours, seed=seed, tuples_per_minute=tuples_per_minute):
        events.extend(blob_events(replace(spec, minutes=minutes)))
    return events


def blob_events(spec: BlobSpec) -> list[FlowEvent]:
    data = blob_bytes(spec)
    source = f"flowlogs/{spec.container}/{spec.blob_name}"
    issues = IssueLog()
    decoder = RecordDecoder(source, len(HEAD), issues)
    normaliser = Normaliser(source, issues)
    events = [e for record in decoder.feed(data[len(HEAD) : -len(TAIL)], final=True) for e in normaliser.events(record)]
    assert not issues.total, issues.summary()
    return events


def make_batch(fmt: str, events: list[FlowEvent], source: str = "test-chunk") -> Batch:
    lines = formatter(fmt).format_many(events)
    return Batch(events=events, lines=lines, source=source, start=0, end=len(events))
