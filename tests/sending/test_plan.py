"""The plan: deterministic, replayable from what the ledger keeps, refusing changed inputs."""

from __future__ import annotations

import hashlib
import logging

import pytest
from hypothesis import given
from hypothesis import strategies as st

from airflow_provider_juhe.sending.ledger import InMemoryStateStore, SendLedger
from airflow_provider_juhe.sending.plan import PlanChangedError, SendPlan, carrier_overrides, digest

TEMPLATES = {"all": 1, "mobile": 2, "unicom": 3, "telecom": 4}
NUMBERS = [f"138{i:08d}" for i in range(25)] + [f"131{i:08d}" for i in range(5)]


def make(
    valid,
    *,
    previous=None,
    overrides=None,
    batch_size=10,
    group=None,
    tpl_value=b"",
    source="api",
    values=None,
    variables=None,
):
    return SendPlan.make(
        to_send=values if values is not None else dict.fromkeys(valid, tpl_value),
        not_sent=[],
        tpl_id=None,
        carrier_tpl_ids=TEMPLATES,
        source=source,
        variables=variables,
        batch_size=batch_size,
        previous=previous,
        previous_overrides=lambda: overrides or {},
        group=group or (lambda numbers: {"mobile": [n for n in numbers if n.startswith("138")]}),
    )


def test_the_order_of_the_input_does_not_change_the_plan():
    assert make(NUMBERS).batches == make(list(reversed(NUMBERS))).batches


def test_only_carrier_answers_that_differ_from_the_prefix_table_are_kept():
    groups = {"mobile": NUMBERS[:24], "unicom": [NUMBERS[24], *NUMBERS[25:]], "telecom": [], "unknown": []}

    assert carrier_overrides(groups) == {NUMBERS[24]: "unicom"}


def test_a_replay_keeps_the_first_batch_size_and_carrier_answers_through_the_ledger():
    ported = {NUMBERS[0]: "telecom"}
    first = make(NUMBERS, group=lambda numbers: {"telecom": [NUMBERS[0]], "mobile": NUMBERS[1:25]})
    assert first.overrides == ported
    ledger = SendLedger(InMemoryStateStore(), logging.getLogger(__name__))
    ledger.save_plan(first)

    def must_not_ask(numbers):
        raise AssertionError("a replay does not ask the API again")

    previous = ledger.read_plan()
    replay = make(
        NUMBERS,
        previous=previous,
        overrides=ledger.read_overrides(previous),
        batch_size=3,
        group=must_not_ask,
    )

    assert replay.replayed
    assert replay.batches == first.batches


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"valid": NUMBERS[:-1]}, "recipients"),
        ({"tpl_value": b"#a#\x1e1"}, "values"),
        ({"source": "local"}, "templates"),
        ({"variables": {"2": ["#name#"]}}, "templates"),
    ],
)
def test_changed_inputs_are_named(change, named):
    first = make(NUMBERS)

    with pytest.raises(PlanChangedError, match=f"^{named} changed"):
        make(**{"valid": NUMBERS, **change}, previous=first.record)


def test_rows_with_equal_values_share_calls_and_distinct_values_get_their_own():
    values = {
        number: b"#name#\x1eA" if index % 2 else f"#name#\x1eB{index}".encode()
        for index, number in enumerate(NUMBERS)
    }
    shuffled = dict(reversed(list(values.items())))

    batches = make(NUMBERS, values=values, batch_size=4).batches

    assert batches == make(NUMBERS, values=shuffled, batch_size=4).batches  # the rows' order does not matter
    for batch in batches:
        assert {values[number] for number in batch.mobiles} == {batch.tpl_value}
    shared = [b for b in batches if b.tpl_value == b"#name#\x1eA"]
    assert sorted(len(b.mobiles) for b in shared) == [3, 4, 4, 4]  # 15 numbers, B = 4, both templates
    assert sum(len(b.mobiles) for b in batches if b.tpl_value != b"#name#\x1eA") == 15
    assert all(len(b.mobiles) == 1 for b in batches if b.tpl_value != b"#name#\x1eA")
    assert [b.index for b in batches] == list(range(len(batches)))


def test_a_changed_value_of_one_row_is_named():
    values = dict.fromkeys(NUMBERS, b"#name#\x1eA")
    first = make(NUMBERS, values=values)

    with pytest.raises(PlanChangedError, match=r"^values changed"):
        make(NUMBERS, values={**values, NUMBERS[3]: b"#name#\x1eB"}, previous=first.record)


def _digest_item_by_item(*parts):
    """The fingerprint as earlier versions computed it, one update per text: plans they left must replay."""
    sha = hashlib.sha256()
    for part in parts:
        for text in [part] if isinstance(part, str) else part:
            sha.update(text if isinstance(text, bytes) else text.encode())
            sha.update(b"\x1f")
        sha.update(b"\x1e")
    return sha.hexdigest()[:24]


texts = st.one_of(st.text(), st.binary())


@given(st.lists(st.one_of(st.text(), st.lists(texts), st.lists(texts).map(tuple)), max_size=4))
def test_the_fingerprint_is_the_one_earlier_versions_wrote(parts):
    from unittest import mock

    from airflow_provider_juhe.sending import plan

    for chunk in (1, 2, 3, plan._DIGEST_CHUNK):  # texts hashed a chunk at a time, whatever the chunk
        with mock.patch.object(plan, "_DIGEST_CHUNK", chunk):
            assert digest(*parts) == _digest_item_by_item(*parts)
