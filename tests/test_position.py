"""The position object alone (fastseq/position.py): serving, epochs, saved states and their errors.

The same behaviour through ``ArraySequence`` (and Keras' worker processes) is
tested in tests/test_sequence.py, tests/test_epochs.py and tests/test_resume.py.
"""

import json
import pickle

import numpy as np
import pytest

from fastseq.sequence.position import Position, runs


def test_serving_every_batch_ends_the_pass_and_the_next_request_starts_the_next():
    p = Position(4)
    assert [p.serve(i) for i in (2, 0, 3)] == [(0, 2), (0, 0), (0, 3)]
    assert p.unserved() == [1] and p.served_count == 3
    assert p.serve(2) == (0, 2) and p.served_count == 3  # serving twice counts once
    assert p.serve(1) == (0, 1) and p.served_count == 4
    assert p.epoch == 0 and p.unserved() == [0, 1, 2, 3]  # complete, still reads its own epoch
    assert p.serve(3) == (1, 3) and p.epoch == 1 and p.unserved() == [0, 1, 2]


def test_advance_if_complete_moves_only_after_a_complete_pass():
    p = Position(3)
    p.serve(0)
    assert p.advance_if_complete() == 1 and p.epoch == 0 and p.unserved() == [1, 2]
    p.serve(1), p.serve(2)
    assert p.advance_if_complete() == 3 and p.epoch == 1 and p.served_count == 0
    assert p.advance_if_complete() == 0 and p.epoch == 1  # repeated hooks change nothing


def test_offset_rotates_into_the_next_epoch():
    p = Position(5)
    p.set_state({"epoch": 2, "offset": 3, "served": []})
    assert [p.locate(i) for i in range(5)] == [(2, 3), (2, 4), (3, 0), (3, 1), (3, 2)]
    assert p.serve(4) == (3, 2)
    p.set_epoch(7)
    assert p.locate(4) == (7, 4) and p.get_state()["offset"] == 0 and p.unserved() == [0, 1, 2, 3, 4]


def test_get_state_set_state_round_trip_through_json():
    p = Position(10, seed=3, shard=(1, 2), epoch=4)
    for i in (0, 1, 2, 5, 9):
        p.serve(i)
    state = p.get_state()
    assert state == {"epoch": 4, "offset": 0, "served": [[0, 3], [5, 6], [9, 10]], "num_batches": 10, "seed": 3,
                     "shard": [1, 2]}
    q = Position(10, seed=3, shard=(0, 2))  # another shard of the same count restores it
    q.set_state(json.loads(json.dumps(state)))
    assert q.get_state() == dict(state, shard=[0, 2])
    assert q.unserved() == [3, 4, 6, 7, 8] and q.served_count == 5 and q.epoch == 4


def test_a_complete_pass_is_saved_as_the_start_of_the_next_epoch():
    p = Position(2, epoch=1)
    p.serve(0), p.serve(1)
    assert p.get_state()["epoch"] == 2 and p.get_state()["served"] == []


@pytest.mark.parametrize(
    "change, exc, match",
    [
        ({"shard": [0, 3]}, ValueError, r"state\['shard'\] is \[0, 3\] but this sequence has shard=\(1, 2\)"),
        ({"shard": "x"}, ValueError, r"state\['shard'\] is 'x'"),
        ({"num_batches": 9}, ValueError, r"state\['num_batches'\] is 9 but this sequence has num_batches=6"),
        ({"seed": 1}, ValueError, r"state\['seed'\] is 1 but this sequence has seed=5"),
        ({"epoch": -1}, ValueError, r"state\['epoch'\] must be >= 0, got -1"),
        ({"epoch": 1.5}, TypeError, r"state\['epoch'\] must be an integer"),
        ({"offset": 6}, ValueError, r"state\['offset'\] must be < len\(seq\) = 6, got 6"),
        ({"served": [[4, 2]]}, ValueError, r"state\['served'\] must be a list of \[start, stop\) runs within 0\.\.6"),
        ({"served": [[0, 7]]}, ValueError, r"runs within 0\.\.6, got \[\[0, 7\]\]"),
        ({"served": 3}, ValueError, r"runs within 0\.\.6, got 3"),
    ],
)
def test_set_state_errors_name_the_field_and_leave_the_position_alone(change, exc, match):
    p = Position(6, seed=5, shard=(1, 2), epoch=2)
    p.serve(1)
    before = p.get_state()
    with pytest.raises(exc, match=match):
        p.set_state(dict(before, **change))
    assert p.get_state() == before


def test_set_state_refuses_what_is_not_a_state():
    p = Position(3)
    for bad in (3, None, {"epoch": 0, "offset": 0}):
        with pytest.raises(TypeError, match=r"state must be the dict returned by get_state\(\)"):
            p.set_state(bad)


def test_set_epoch_checks_its_argument():
    p = Position(3)
    with pytest.raises(ValueError, match=r"epoch must be >= 0, got -2"):
        p.set_epoch(-2)
    with pytest.raises(TypeError, match=r"epoch must be an integer"):
        p.set_epoch("1")


def test_a_pickled_copy_has_its_own_block():
    p = Position(5, seed=1, shard=(0, 1), epoch=3)
    p.serve(0), p.serve(4)
    copy = pickle.loads(pickle.dumps(p))
    assert copy.get_state() == p.get_state() and copy.lock is not p.lock
    copy.serve(1)
    assert p.unserved() == [1, 2, 3] and copy.unserved() == [2, 3]


def test_runs():
    assert runs(np.array([], np.int64)) == []
    assert runs(np.array([0, 1, 2, 5, 7, 8])) == [[0, 3], [5, 6], [7, 9]]
