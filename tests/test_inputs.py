"""Reading the iterables of a run: calls in chunks that travel compactly."""

import pickle

import cloudpickle
import pytest

from parmagic.engine.inputs import Inputs
from parmagic.worker.calls import run_calls


@pytest.mark.parametrize("iterables, star, expected", [
    (lambda: [range(5)], False, [(i, (i,)) for i in range(5)]),
    (lambda: [range(5), "abcde"], False, [(i, (i, "abcde"[i])) for i in range(5)]),
    (lambda: [[(1, 2), (3, 4)]], True, [(0, (1, 2)), (1, (3, 4))]),
    (lambda: [(x for x in [None, [1], {"a": 2}])], False,
     [(0, (None,)), (1, ([1],)), (2, ({"a": 2},))]),
])
@pytest.mark.parametrize("dumps", [pickle.dumps, cloudpickle.dumps])
def test_a_chunk_of_calls_arrives_as_the_same_plain_list(iterables, star, expected, dumps):
    inputs = Inputs(iterables(), star)
    first = inputs.take(1)
    rest = inputs.take(10)
    assert first + rest == expected  # it is a list of (index, args) calls
    for chunk in (first, rest):
        arrived = pickle.loads(dumps(chunk))
        assert list(arrived) == list(chunk) and len(arrived) == len(chunk)
        assert list(run_calls(pow_or_id, arrived).indices) == [index for index, _ in chunk]
    assert len(inputs.take(10)) == 0


def pow_or_id(*args):
    return pow(*args) if len(args) == 2 and all(isinstance(a, int) for a in args) else args


def test_a_worker_calls_each_item_of_a_chunk_with_its_index():
    chunk = Inputs([range(3), [2, 2, 2]], False).take(3)
    batch = run_calls(pow_or_id, pickle.loads(pickle.dumps(chunk)))
    assert (batch.indices, batch.values) == ([0, 1, 2], [0, 1, 4])
    batch = run_calls(abs, pickle.loads(pickle.dumps(Inputs([[-5, 6, "x"]], False).take(3))))
    assert list(batch.indices) == [0, 1, 2]
    assert (batch.values[:2], list(batch.failures)) == ([5, 6], [2])
