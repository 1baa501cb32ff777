"""The worker protocol, defined once: a job's process writes one JSON line per message on stdout and the server reads
them back. A job says how far it is (Progress), what it has saved so far (Saved), and ends with exactly one of Done,
Failed or Cancelled. Any other line on stdout (a model that prints) is not ours and is skipped."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any, Union


@dataclass
class Progress:
    stage: str
    fraction: float = 0.0


@dataclass
class Saved:
    what: str  # "run", "comparison" or "sweep"
    id: str


@dataclass
class Done:
    result: Any = None  # JSON: a run id, a list of rows, a saved record as a dict


@dataclass
class Failed:
    reason: str


@dataclass
class Cancelled:
    reason: str = ""


Message = Union[Progress, Saved, Done, Failed, Cancelled]
MESSAGES: dict[str, type] = {cls.__name__.lower(): cls for cls in (Progress, Saved, Done, Failed, Cancelled)}
FINAL = (Done, Failed, Cancelled)


def as_dict(message: Message) -> dict:
    """`message` as the JSON object its line holds: what an executor hands to its caller's on_message."""
    return {"type": type(message).__name__.lower(), **dataclasses.asdict(message)}


def encode(message: Message) -> str:
    """One JSON line (with its newline) for `message`."""
    return json.dumps(as_dict(message)) + "\n"


def decode(line: str | dict) -> Message | None:
    """The message in a line of a worker's stdout (or a line already parsed, as an executor may hand it over); None
    for anything that is not one of ours."""
    if isinstance(line, str):
        try:
            line = json.loads(line)
        except json.JSONDecodeError:
            return None
    if not isinstance(line, dict):
        return None
    cls = MESSAGES.get(line.get("type"))
    if cls is None:
        return None
    try:
        return cls(**{f.name: line[f.name] for f in dataclasses.fields(cls) if f.name in line})
    except TypeError:  # a required field is missing
        return None
