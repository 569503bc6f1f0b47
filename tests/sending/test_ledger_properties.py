"""Ledger segments searched with hypothesis: any updates and sids, read back by a later try."""

from __future__ import annotations

import logging

from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_provider_juhe.sending.ledger import (
    ANNOUNCED,
    NOT_SENT,
    SEGMENT_BATCHES,
    SENT,
    UNKNOWN,
    InMemoryStateStore,
    SendLedger,
)

LOG = logging.getLogger(__name__)
#: Sids as a server might send them: with the ledger's own separators, escapes, any script.
sids = st.text(st.one_of(st.sampled_from(",;%25 \n"), st.characters(exclude_categories=("Cs",))), max_size=30)


@st.composite
def histories(draw: st.DrawFn) -> tuple[int, list[tuple[list[tuple[int, str]], dict[int, tuple[str, int]]]]]:
    """A batch count around segment boundaries and the writes of a send: ``(updates, sids)`` each."""
    count = draw(st.sampled_from((1, SEGMENT_BATCHES - 1, SEGMENT_BATCHES, SEGMENT_BATCHES + 1, 1_234)))
    index = st.one_of(
        st.integers(0, count - 1), st.sampled_from([min(i, count - 1) for i in (0, 499, 500, 999)])
    )
    writes = []
    for _ in range(draw(st.integers(1, 8))):
        updates = draw(
            st.lists(st.tuples(index, st.sampled_from((NOT_SENT, ANNOUNCED, SENT, UNKNOWN))), max_size=12)
        )
        sent = {i: (draw(sids), draw(st.integers(0, 10**6))) for i, state in updates if state == SENT}
        writes.append((updates, sent))
    return count, writes


@settings(max_examples=80, deadline=None)
@given(histories())
def test_a_later_try_reads_back_every_state_and_sid(history):
    count, writes = history
    store = InMemoryStateStore()
    ledger = SendLedger(store, LOG)
    ledger.load(count, replayed=False)
    states = [NOT_SENT] * count
    sent: dict[int, tuple[str, int]] = {}
    for updates, sids_now in writes:
        ledger.write(updates, sids_now)
        for index, state in updates:
            states[index] = state
        sent.update(sids_now)

    later = SendLedger(store, LOG)
    later.load(count, replayed=True)

    assert [later.state(i) for i in range(count)] == states
    assert {i: later.sent(i) for i in sent} == sent
