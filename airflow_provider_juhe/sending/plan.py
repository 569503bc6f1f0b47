"""
The send plan: which number goes with which template, in which batch.

A task instance's first try fixes the plan; every later try replays it from what the ledger keeps
(the batch size, the carrier answers that differ from the prefix table, digests of the inputs), so
a ported number or an edited ``batch_size`` can never regroup numbers into batches an earlier try
did not send. Pure functions: no Airflow, no HTTP.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from airflow_provider_juhe.juhe_api import SEND_LIMIT
from airflow_provider_juhe.mobiles import BROADNET, UNKNOWN, carrier_of

CARRIER_ORDER = ("mobile", "unicom", "telecom", "unknown")
MAX_WORKERS_LIMIT = 64
PLAN_VERSION = 2
_DIGEST_CHUNK = 10_000


@dataclass(frozen=True, slots=True)
class Batch:
    """One send.php call: its place in the plan, a template, its values, up to ``batch_size`` numbers."""

    index: int
    tpl_id: int
    mobiles: tuple[str, ...]
    tpl_value: bytes = b""  # packed (sms_content.pack_values)


class PlanChangedError(ValueError):
    """The inputs differ from what an earlier try of the task instance planned."""


def validate_batching(batch_size: int, max_workers: int) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or not 1 <= batch_size <= SEND_LIMIT:
        raise ValueError(f"batch_size: expected an integer from 1 to {SEND_LIMIT}, got {batch_size!r}")
    if (
        isinstance(max_workers, bool)
        or not isinstance(max_workers, int)
        or not 1 <= max_workers <= MAX_WORKERS_LIMIT
    ):
        raise ValueError(
            f"max_workers: expected an integer from 1 to {MAX_WORKERS_LIMIT}, got {max_workers!r}"
        )


def resolve_carrier_tpl_ids(value: Mapping[str, Any] | None) -> dict[str, int] | None:
    """
    Accept ``{"all": 767, "mobile": 768, ...}`` or a whole ``submit_template`` result.

    :raises ValueError: not a mapping, an unknown carrier, or an id that is not a positive integer.
    """
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise ValueError(
            f"carrier_tpl_ids: expected a mapping such as {{'all': 767, 'mobile': 768}}, got {value!r}"
        )
    if isinstance(value.get("carrier_tpl_ids"), Mapping):
        value = value["carrier_tpl_ids"]
    resolved: dict[str, int] = {}
    for carrier, tpl_id in value.items():
        if carrier not in ("all", *CARRIER_ORDER[:3]):
            raise ValueError(f"carrier_tpl_ids: unknown carrier {carrier!r} (all, mobile, unicom, telecom)")
        if isinstance(tpl_id, bool) or not str(tpl_id).isdigit() or int(tpl_id) <= 0:
            raise ValueError(f"carrier_tpl_ids[{carrier!r}]: expected a positive template id, got {tpl_id!r}")
        resolved[carrier] = int(tpl_id)
    if not resolved:
        raise ValueError("carrier_tpl_ids: empty mapping")
    return resolved


def digest(*parts: str | Iterable[str | bytes]) -> str:
    """A short, stable fingerprint of strings (or lists of strings or bytes)."""
    sha = hashlib.sha256()
    for part in parts:
        texts = iter([part] if isinstance(part, str) else part)
        # Each text followed by \x1f, hashed a chunk at a time: 100,000 updates cost 0.1 s each, and
        # one piece of a million rows' values would cost 100 MB.
        while chunk := [
            text if isinstance(text, bytes) else text.encode()
            for text in itertools.islice(texts, _DIGEST_CHUNK)
        ]:
            sha.update(b"\x1f".join(chunk))
            sha.update(b"\x1f")
        sha.update(b"\x1e")
    return sha.hexdigest()[:24]


def check_unchanged(planned: Mapping[str, str], now: Mapping[str, str]) -> None:
    """:raises PlanChangedError: naming each input that differs from the earlier try's plan."""
    changed = [name for name, value in now.items() if planned.get(name) != value]
    if "recipients" in changed and "values" in changed:  # values are per number: other numbers, other values
        changed.remove("values")
    if changed:
        raise PlanChangedError(
            f"{', '.join(changed)} changed since an earlier try of this task instance planned the send: "
            "nothing was sent by this try, so that no number gets a message twice. Restore the inputs and "
            "clear the task, or send the new inputs from a new DAG run."
        )


def prefix_carrier(number: str) -> str:
    """The carrier the prefix table names, in ``group_mobiles`` terms (Broadnet counts as unknown)."""
    carrier = carrier_of(number)
    return UNKNOWN if carrier == BROADNET else carrier


def carrier_overrides(groups: Mapping[str, Iterable[str]]) -> dict[str, str]:
    """The API's answers that differ from the prefix table: all a retry needs to route the same way."""
    return {
        number: carrier
        for carrier, numbers in groups.items()
        for number in numbers
        if prefix_carrier(number) != carrier
    }


def route(
    numbers: Iterable[str],
    tpl_id: int | None,
    carrier_tpl_ids: Mapping[str, int] | None,
    overrides: Mapping[str, str],
) -> dict[int, list[str]]:
    """
    Each number with its template: one ``tpl_id`` for all, or its carrier's (unknown carriers with ``all``).

    :raises ValueError: a carrier has numbers but no template and there is no ``all`` template.
    """
    if carrier_tpl_ids is None:
        assert tpl_id is not None
        listed = list(numbers)
        return {tpl_id: listed} if listed else {}
    by_carrier: dict[str, list[str]] = {carrier: [] for carrier in CARRIER_ORDER}
    for number in numbers:
        by_carrier[overrides.get(number) or prefix_carrier(number)].append(number)
    routed: dict[int, list[str]] = {}
    for carrier in CARRIER_ORDER:
        if not by_carrier[carrier]:
            continue
        chosen = (carrier_tpl_ids.get(carrier) if carrier != UNKNOWN else None) or carrier_tpl_ids.get("all")
        if chosen is None:
            raise ValueError(
                f"carrier_tpl_ids: no template for {len(by_carrier[carrier])} {carrier} number(s) "
                "and no 'all' template"
            )
        routed.setdefault(chosen, []).extend(by_carrier[carrier])
    return routed


def plan_batches(
    routed: Mapping[int, list[str]], values: Mapping[str, bytes], batch_size: int
) -> Iterator[Batch]:
    """
    Numbers with equal values share calls, up to ``batch_size`` each; one call per distinct set of
    values otherwise. Within a template, groups follow their values' order and numbers stay sorted.
    """
    index = 0
    for tpl_id, numbers in routed.items():
        by_values = sorted(numbers, key=values.__getitem__)  # stable: numbers stay sorted within a group
        for tpl_value, members in itertools.groupby(by_values, key=values.__getitem__):
            group = list(members)
            for start in range(0, len(group), batch_size):
                yield Batch(index, tpl_id, tuple(group[start : start + batch_size]), tpl_value)
                index += 1


@dataclass
class SendPlan:
    """
    The calls of one task instance, and what the ledger keeps to replay them.

    :param routed: template id -> its numbers, sorted.
    :param values: number -> its packed variables.
    :param inputs: digests of the inputs, which a retry must find unchanged.
    :param batch_size: numbers per call (an earlier try's, when replayed).
    :param variables: template id -> the variables its text uses (``None``: not known), as checked.
    :param overrides: carrier answers that differ from the prefix table (kept beside the record).
    :param replayed: whether an earlier try made this plan.
    """

    routed: dict[int, list[str]]
    values: Mapping[str, bytes]
    inputs: dict[str, str]
    batch_size: int
    variables: dict[str, list[str]] | None
    overrides: dict[str, str]
    replayed: bool

    def iter_batches(self) -> Iterator[Batch]:
        return plan_batches(self.routed, self.values, self.batch_size)

    @cached_property
    def batches(self) -> list[Batch]:
        """Every call of the send, in order."""
        return list(self.iter_batches())

    @property
    def record(self) -> dict[str, Any]:
        """What the ledger keeps (besides the carrier answers)."""
        return {
            "version": PLAN_VERSION,
            "inputs": self.inputs,
            "batch_size": self.batch_size,
            "variables": self.variables,
            "batches": len(self.batches),
        }

    @classmethod
    def make(
        cls,
        *,
        to_send: Mapping[str, bytes],
        not_sent: Iterable[str],
        tpl_id: int | None,
        carrier_tpl_ids: Mapping[str, int] | None,
        source: str,
        variables: dict[str, list[str]] | None,
        batch_size: int,
        previous: Mapping[str, Any] | None,
        previous_overrides: Callable[[], dict[str, str]],
        group: Callable[[list[str]], Mapping[str, list[str]]],
    ) -> SendPlan:
        """
        Replay ``previous`` when an earlier try planned; else plan afresh.

        :param to_send: number -> its packed variables, for every number to send.
        :param not_sent: the other requested numbers (invalid, suppressed): part of the recipients'
            digest, so that a number moving in or out of the send between tries is noticed.
        :param variables: the variables checked in the rows, per template (in the plan's record).
        :param previous: the plan record an earlier try left, or ``None``.
        :param previous_overrides: reads the earlier try's carrier answers (only when replaying).
        :param group: asks the API for carriers (only when planning afresh with ``source="api"``).
        :raises PlanChangedError: the recipients, templates or values differ from ``previous``.
        """
        templates = {"tpl_id": tpl_id} if carrier_tpl_ids is None else {**carrier_tpl_ids, "source": source}
        numbers = sorted(to_send)  # the plan must not depend on the order rows arrive in
        inputs = {
            "recipients": digest(numbers, sorted(not_sent)),
            "templates": digest(json.dumps({**templates, "variables": variables}, sort_keys=True)),
            "values": digest(to_send[number] for number in numbers),
        }
        if previous is not None:
            if previous.get("version") != PLAN_VERSION:
                raise PlanChangedError(
                    "the plan of an earlier try was written by another version of this provider: nothing "
                    "was sent by this try. Send the remaining numbers from a new DAG run."
                )
            check_unchanged(previous["inputs"], inputs)
            batch_size = int(previous["batch_size"])
            overrides = previous_overrides() if carrier_tpl_ids is not None else {}
        elif carrier_tpl_ids is not None and source == "api" and numbers:
            overrides = carrier_overrides(group(numbers))
        else:
            overrides = {}
        routed = route(numbers, tpl_id, carrier_tpl_ids, overrides)
        return cls(routed, to_send, inputs, batch_size, variables, overrides, replayed=previous is not None)
