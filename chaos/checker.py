"""The consistency checker of the chaos harness: a pure function of a recorded history.

Sans-I/O like every core here: the runner records what clients saw (appends with their
outcome, reads, tail samples) and `check(history)` decides whether the log kept its promises
(DESIGN.md "Safety invariants", restate-architecture.md §9):

- **lost**: an acknowledged append is not found at its LSN by some complete final read (the
  record is missing or another record is there). Two acknowledgements naming the same LSN of
  one log count as divergent (only one of them can be there).
- **divergent**: an LSN of a log was read with two different records, by any two readers or
  by one reader at different times.
- **sequence mismatch**: a reader's records are not a gapless, strictly increasing run of
  LSNs, or the complete final reads of a log differ in extent (every reader must see the
  identical sequence).
- **phantom**: a record nobody ever tried to append.
- **tail regression**: a node reported a lower tail for a log than it reported before.
- **read past tail**: a record read at or beyond the final tail of its log.

**Duplicates are counted, not violations.** Bifrost appends are at-least-once across
reconfiguration (bifrost/bifrost.py): a batch stored in a sealed segment may be appended again
in the next one, so one attempt can appear at several LSNs. The harness gives every attempt a
unique payload, so each extra copy is counted in ``duplicates`` and listed, never hidden.
An attempt that failed or timed out is indeterminate: it may appear (any number of copies,
counted as above) or not at all.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

# Violations listed per kind before the rest are only counted (a broken log can produce
# thousands; the first few explain it).
MAX_LISTED_PER_KIND = 20


@dataclass(frozen=True, slots=True)
class Append:
    """One append attempt of one unique payload. ``lsn`` is None unless acknowledged."""

    log_id: int
    payload: bytes
    node: str
    started_s: float
    ended_s: float
    lsn: int | None = None
    error: str | None = None

    @property
    def acked(self) -> bool:
        return self.lsn is not None


@dataclass(frozen=True, slots=True)
class Observation:
    """What one reader saw of one log, in delivery order.

    ``complete`` marks the final reads taken after healing: they must cover every LSN below
    ``History.final_tails``. Followers during the run are incomplete (they saw a prefix).
    """

    reader: str
    node: str
    log_id: int
    entries: tuple[tuple[int, bytes], ...]
    complete: bool = False


@dataclass(frozen=True, slots=True)
class TailSample:
    node: str
    log_id: int
    at_s: float
    tail: int


@dataclass(slots=True)
class History:
    appends: list[Append] = field(default_factory=list)
    observations: list[Observation] = field(default_factory=list)
    tails: list[TailSample] = field(default_factory=list)
    # Next LSN of each log once the final liveness appends succeeded; complete reads cover
    # [1, final_tail). A log missing here is checked without the extent rules.
    final_tails: dict[int, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Violation:
    kind: str  # lost | divergent | sequence | phantom | tail-regression | read-past-tail
    log_id: int
    message: str


@dataclass(slots=True)
class CheckResult:
    operations: int = 0
    acked: int = 0
    indeterminate: int = 0
    lost: int = 0
    divergent: int = 0
    duplicates: int = 0
    phantoms: int = 0
    sequence_mismatches: int = 0
    tail_regressions: int = 0
    reads_past_tail: int = 0
    violations: list[Violation] = field(default_factory=list)
    duplicate_examples: list[str] = field(default_factory=list)
    # Violations beyond MAX_LISTED_PER_KIND, per kind: counted, not listed.
    unlisted: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not (
            self.lost
            or self.divergent
            or self.phantoms
            or self.sequence_mismatches
            or self.tail_regressions
            or self.reads_past_tail
        )

    def counts(self) -> dict[str, int]:
        return {
            "operations": self.operations,
            "acked": self.acked,
            "indeterminate": self.indeterminate,
            "lost": self.lost,
            "divergent": self.divergent,
            "duplicates": self.duplicates,
            "phantoms": self.phantoms,
            "sequence_mismatches": self.sequence_mismatches,
            "tail_regressions": self.tail_regressions,
            "reads_past_tail": self.reads_past_tail,
        }


def _show(payload: bytes) -> str:
    text = payload.decode("utf-8", "backslashreplace")
    return text if len(text) <= 60 else text[:57] + "..."


class _Collector:
    def __init__(self, result: CheckResult) -> None:
        self._result = result
        self._listed: dict[str, int] = defaultdict(int)

    def add(self, kind: str, log_id: int, message: str) -> None:
        if self._listed[kind] < MAX_LISTED_PER_KIND:
            self._listed[kind] += 1
            self._result.violations.append(Violation(kind, log_id, message))
        else:
            self._result.unlisted[kind] = self._result.unlisted.get(kind, 0) + 1


def check(history: History) -> CheckResult:
    result = CheckResult()
    out = _Collector(result)
    result.operations = len(history.appends)
    result.acked = sum(1 for a in history.appends if a.acked)
    result.indeterminate = result.operations - result.acked
    attempted: dict[int, set[bytes]] = defaultdict(set)
    for a in history.appends:
        attempted[a.log_id].add(a.payload)

    logs = sorted(
        {a.log_id for a in history.appends}
        | {o.log_id for o in history.observations}
        | set(history.final_tails)
    )
    for log_id in logs:
        _check_log(
            log_id,
            [a for a in history.appends if a.log_id == log_id],
            [o for o in history.observations if o.log_id == log_id],
            attempted[log_id],
            history.final_tails.get(log_id),
            result,
            out,
        )
    _check_tails(history.tails, result, out)
    return result


def _check_log(
    log_id: int,
    appends: list[Append],
    observations: list[Observation],
    attempted: set[bytes],
    final_tail: int | None,
    result: CheckResult,
    out: _Collector,
) -> None:
    # 1. Every reader on its own: strictly increasing, gapless LSNs.
    for obs in observations:
        prev: int | None = None
        for lsn, _ in obs.entries:
            if prev is not None and lsn != prev + 1:
                result.sequence_mismatches += 1
                what = "went back" if lsn <= prev else "skipped"
                out.add(
                    "sequence",
                    log_id,
                    f"reader {obs.reader} (node {obs.node}) {what}: LSN {prev} then {lsn}",
                )
                break
            prev = lsn

    # 2. One record per LSN across all readers and all times.
    seen: dict[int, dict[bytes, list[str]]] = defaultdict(lambda: defaultdict(list))
    for obs in observations:
        for lsn, payload in obs.entries:
            readers = seen[lsn][payload]
            if not readers or readers[-1] != obs.reader:
                readers.append(obs.reader)
    acks_at: dict[int, list[Append]] = defaultdict(list)
    for a in appends:
        if a.lsn is not None:
            acks_at[a.lsn].append(a)
    for lsn in sorted(set(seen) | set(acks_at)):
        versions = seen.get(lsn, {})
        acked_payloads = {a.payload for a in acks_at.get(lsn, [])}
        if len(versions) > 1 or len(acked_payloads) > 1:
            result.divergent += 1
            parts = [f"{_show(p)!r} read by {', '.join(sorted(set(r)))}" for p, r in versions.items()]
            if len(acked_payloads) > 1:
                parts.append("acknowledged to " + ", ".join(repr(_show(p)) for p in sorted(acked_payloads)))
            out.add("divergent", log_id, f"LSN {lsn} has {len(versions)} records: " + "; ".join(parts))

    # 3. Phantoms: any record any reader saw that nobody tried to append. Duplicates: an
    #    attempt found at several LSNs (counted once per LSN, whatever was read there).
    at: dict[bytes, list[int]] = defaultdict(list)
    for lsn in sorted(seen):
        for payload in seen[lsn]:
            at[payload].append(lsn)
    for payload, lsns in at.items():
        if payload not in attempted:
            result.phantoms += 1
            out.add("phantom", log_id, f"record {_show(payload)!r} at LSN {lsns} was never appended")
        elif len(lsns) > 1:
            result.duplicates += len(lsns) - 1
            if len(result.duplicate_examples) < MAX_LISTED_PER_KIND:
                result.duplicate_examples.append(f"log {log_id}: {_show(payload)!r} at LSNs {lsns}")

    # 4. Every acknowledged payload at its LSN in every complete read.
    complete = [o for o in observations if o.complete]
    by_reader = [(o, dict(o.entries)) for o in complete]
    for a in appends:
        if a.lsn is None:
            continue
        missing = []
        for obs, entries in by_reader:
            got = entries.get(a.lsn)
            if got != a.payload:
                missing.append(f"{obs.reader}: " + ("nothing" if got is None else repr(_show(got))))
        if missing:
            result.lost += 1
            out.add(
                "lost",
                log_id,
                f"acknowledged {_show(a.payload)!r} at LSN {a.lsn} (via {a.node}) but final reads show "
                + "; ".join(missing),
            )

    # 5. Complete reads cover exactly [1, final_tail); nothing is ever read at/after it.
    if final_tail is not None:
        for obs in complete:
            lsns = [lsn for lsn, _ in obs.entries]
            if lsns[: final_tail - 1] != list(range(1, final_tail)):
                result.sequence_mismatches += 1
                span = f"{lsns[0]}..{lsns[-1]}" if lsns else "nothing"
                out.add(
                    "sequence",
                    log_id,
                    f"complete read by {obs.reader} covers {span}, expected 1..{final_tail - 1}",
                )
        beyond = sorted(lsn for lsn in seen if lsn >= final_tail)
        if beyond:
            result.reads_past_tail += len(beyond)
            out.add(
                "read-past-tail",
                log_id,
                f"{len(beyond)} LSNs read at or beyond the final tail {final_tail} (first {beyond[0]})",
            )


def _check_tails(tails: list[TailSample], result: CheckResult, out: _Collector) -> None:
    last: dict[tuple[str, int], TailSample] = {}
    for sample in sorted(tails, key=lambda s: s.at_s):
        key = (sample.node, sample.log_id)
        prev = last.get(key)
        if prev is not None and sample.tail < prev.tail:
            result.tail_regressions += 1
            out.add(
                "tail-regression",
                sample.log_id,
                f"node {sample.node} reported tail {prev.tail} at {prev.at_s:.2f}s, "
                f"then {sample.tail} at {sample.at_s:.2f}s",
            )
        if prev is None or sample.tail >= prev.tail:
            last[key] = sample
