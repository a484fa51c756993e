"""Reading a Server-Sent Events stream: the lines of one HTTP response, as events."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, Optional


@dataclass(frozen=True)
class Event:
    """One event of a run: `id` is its sequence number in the run (resume after it), `kind`
    its kind (`run_accepted`, `node_started`, `node_succeeded`, `run_succeeded`, ...), `data`
    the event itself (`run_id`, `seq`, `node_id`, `iteration`, `attempt`, `at_ms`, `detail`)."""

    id: int
    kind: str
    data: Dict[str, Any] = field(default_factory=dict)

    @property
    def is_final(self) -> bool:
        """Whether the run ended with this event (the stream closes after it)."""
        return self.kind in FINAL_EVENTS


FINAL_EVENTS = frozenset({"run_succeeded", "run_failed", "run_cancelled", "run_rejected"})


def parse(lines: Iterator[bytes]) -> Iterator[Event]:
    """The events of an SSE stream given as raw lines (comments and keep-alives skipped)."""
    ev_id: Optional[str] = None
    kind = "message"
    data: list = []
    for raw in lines:
        line = raw.decode("utf-8").rstrip("\r\n")
        if not line:
            if data:
                text = "\n".join(data)
                try:
                    payload = json.loads(text)
                except ValueError:
                    payload = {"text": text}
                seq = int(ev_id) if ev_id and ev_id.isdigit() else payload.get("seq", 0)
                yield Event(id=seq, kind=kind, data=payload)
            kind, data = "message", []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "id":
            ev_id = value
        elif name == "event":
            kind = value
        elif name == "data":
            data.append(value)
