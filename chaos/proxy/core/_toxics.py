"""Toxics as values: the types Toxiproxy knows, their attributes, and validation of API input.

Validation follows Toxiproxy's `ToxicCollection.AddToxicJson` step by step (stream, default
name, type, duplicate name, then attributes) so that a request with several faults gets the
same error as from the real server. We are stricter in two places, both 400s where Toxiproxy
accepts the input and then misbehaves: negative attributes, a toxicity outside [0, 1], and a
slicer `average_size` of 0 (Toxiproxy recurses forever on it).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from ._errors import bad_request_body, invalid_stream, invalid_toxic_type, toxic_already_exists


class Stream(enum.Enum):
    """The direction a toxic acts on, named from the client's point of view (as Toxiproxy)."""

    UPSTREAM = "upstream"
    """client → server: the request side."""
    DOWNSTREAM = "downstream"
    """server → client: the response side."""

    @property
    def other(self) -> Stream:
        return Stream.DOWNSTREAM if self is Stream.UPSTREAM else Stream.UPSTREAM


TOXIC_ATTRIBUTES: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "latency": ("latency", "jitter"),  # ms, ms
        "bandwidth": ("rate",),  # KB/s (1 KB = 1000 bytes, as Toxiproxy computes it)
        "slow_close": ("delay",),  # ms
        "timeout": ("timeout",),  # ms, 0 = never close
        "reset_peer": ("timeout",),  # ms
        "slicer": ("average_size", "size_variation", "delay"),  # bytes, bytes, µs
        "limit_data": ("bytes",),
    }
)
"""Every toxic type and its attribute names; an attribute left out of a request is 0."""


@dataclass(frozen=True, slots=True)
class Toxic:
    name: str
    type: str
    stream: Stream
    toxicity: float
    """Probability that the toxic applies to a given connection, drawn once per connection."""
    attributes: Mapping[str, int]

    def attr(self, key: str) -> int:
        return self.attributes[key]

    def to_json(self) -> dict[str, object]:
        return {
            "attributes": dict(self.attributes),
            "name": self.name,
            "type": self.type,
            "stream": self.stream.value,
            "toxicity": self.toxicity,
        }


def parse_toxic(body: object, name_taken: Callable[[str], bool]) -> Toxic:
    """A new toxic from a `POST /proxies/{p}/toxics` body; `name_taken` answers the 409 check."""
    if not isinstance(body, dict):
        raise bad_request_body("expected a JSON object")
    stream_raw = _string(body, "stream", "downstream")
    try:
        stream = Stream(stream_raw.lower())
    except ValueError:
        raise invalid_stream() from None
    toxic_type = _string(body, "type", "")
    name = _string(body, "name", "") or f"{toxic_type}_{stream.value}"
    if toxic_type not in TOXIC_ATTRIBUTES:
        raise invalid_toxic_type()
    if name_taken(name):
        raise toxic_already_exists()
    toxicity = _toxicity(body, 1.0)
    zero = dict.fromkeys(TOXIC_ATTRIBUTES[toxic_type], 0)
    attributes = _attributes(toxic_type, body.get("attributes"), zero)
    return Toxic(name, toxic_type, stream, toxicity, MappingProxyType(attributes))


def update_toxic(toxic: Toxic, body: object) -> Toxic:
    """`POST /proxies/{p}/toxics/{t}`: merge the given attributes, keep the rest (as Toxiproxy).

    Only `attributes` and `toxicity` can change; name, type and stream are fixed for a toxic's life.
    """
    if not isinstance(body, dict):
        raise bad_request_body("expected a JSON object")
    toxicity = _toxicity(body, toxic.toxicity)
    attributes = _attributes(toxic.type, body.get("attributes"), dict(toxic.attributes))
    return Toxic(toxic.name, toxic.type, toxic.stream, toxicity, MappingProxyType(attributes))


def _string(body: dict[str, object], key: str, default: str) -> str:
    value = body.get(key)
    if value is None:
        return default
    if not isinstance(value, str):
        raise bad_request_body(f"{key} must be a string")
    return value


def _toxicity(body: dict[str, object], default: float) -> float:
    value = body.get("toxicity")
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise bad_request_body("toxicity must be a number")
    if not 0.0 <= value <= 1.0:
        raise bad_request_body("toxicity must be between 0 and 1")
    return float(value)


def _attributes(toxic_type: str, raw: object, base: dict[str, int]) -> dict[str, int]:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise bad_request_body("attributes must be an object")
    # Unknown keys are ignored, as Go's JSON decoder does for the real server.
    for key in TOXIC_ATTRIBUTES[toxic_type]:
        value = raw.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad_request_body(f"attribute {key} of {toxic_type} must be an integer")
        if value < 0:
            raise bad_request_body(f"attribute {key} of {toxic_type} must not be negative")
        base[key] = value
    if toxic_type == "slicer" and base["average_size"] < 1:
        raise bad_request_body("attribute average_size of slicer must be at least 1")
    return base
