"""md_sync_nb: the market-data status from the book record's message counters equals md_on_book_update_nb's."""

import numpy as np
import pytest

from mmlab.data.book_nb import new_books
from mmlab.pipeline import count_book_message_nb, md_on_book_update_nb, md_sync_nb
from mmlab.pipeline_config import make_md_status, make_pipeline
from mmlab.types import MdInvalid, SeqCheck

FIELDS = ("last_ts_local_ns", "last_ts_exch_ns", "last_update_id", "n_updates", "n_gaps", "n_rewinds", "n_snapshots",
          "invalid")


def _messages(rng, n):
    """(ts_local, ts_exch, update_id, is_snapshot) rows: contiguous ids with rewinds, gaps, no-id and snapshots."""
    rows = []
    uid = 100
    for i in range(n):
        u = rng.random()
        if u < 0.08:
            snap, uid = True, uid + int(rng.integers(1, 50))
        elif u < 0.16:
            snap, uid = False, uid - int(rng.integers(1, 5))  # rewind
        elif u < 0.26:
            snap, uid = False, uid + int(rng.integers(2, 9))  # gap
        else:
            snap, uid = False, uid + 1
        rid = -1 if rng.random() < 0.05 else uid
        rows.append((1_000 * (i + 1), 900 * (i + 1), rid, snap))
    return rows


@pytest.mark.parametrize("mode", list(SeqCheck))
@pytest.mark.parametrize("seed", range(6))
def test_sync_at_any_point_equals_the_per_message_status(mode, seed):
    rng = np.random.default_rng(seed)
    fetch = make_pipeline(fetch_md=dict(seq_check=mode.name.lower())).arr[0]["fetch_params"]
    ref = make_md_status()
    md = make_md_status()
    book, _, _ = new_books(1, 16)
    checked = 0
    for ts_l, ts_e, uid, snap in _messages(rng, 400):
        md_on_book_update_nb(ref[0], fetch, ts_l, ts_e, uid, snap)
        count_book_message_nb(book[0], ts_l, ts_e, uid, snap)
        if rng.random() < 0.3:  # a decision: md catches up with every message since the last one
            md_sync_nb(md[0], fetch, book[0])
            assert {f: md[0][f] for f in FIELDS} == {f: ref[0][f] for f in FIELDS}
            checked += 1
    md_sync_nb(md[0], fetch, book[0])
    assert {f: md[0][f] for f in FIELDS} == {f: ref[0][f] for f in FIELDS}
    assert checked > 50
    if mode != SeqCheck.NONE:
        assert ref[0]["n_rewinds"] > 0  # the sequence exercised the checks
    if mode == SeqCheck.CONTIGUOUS:
        assert ref[0]["n_gaps"] > 0


def test_a_snapshot_after_a_gap_revalidates_and_a_gap_after_it_does_not():
    fetch = make_pipeline(fetch_md=dict(seq_check="contiguous")).arr[0]["fetch_params"]
    md = make_md_status()
    book, _, _ = new_books(1, 16)
    for uid, snap in ((1, True), (2, False), (5, False), (9, True)):
        count_book_message_nb(book[0], uid, uid, uid, snap)
    assert md_sync_nb(md[0], fetch, book[0]) == MdInvalid.NONE
    assert (md[0]["n_gaps"], md[0]["n_snapshots"], md[0]["n_updates"]) == (1, 2, 4)
    count_book_message_nb(book[0], 10, 10, 12, False)
    assert md_sync_nb(md[0], fetch, book[0]) == MdInvalid.GAP
    assert md_sync_nb(md[0], fetch, book[0]) == MdInvalid.GAP  # no new message: unchanged
    assert md[0]["n_gaps"] == 2
