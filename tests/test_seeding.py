"""--seed: each item's random numbers depend on the seed and its index only;
without it no two workers draw the same numbers."""

import random
import warnings

import numpy as np
import pytest

import parmagic
from parmagic import ParmagicInputError, pmap

COMBINATIONS = [
    dict(n_jobs=2, backend="loky"),
    dict(n_jobs=2, backend="loky", batch_size=3),
    dict(n_jobs=1, backend="loky"),
    dict(backend="sequential"),
    dict(n_jobs=2, backend="multiprocessing"),
]


def draws(_):
    return (float(np.random.rand()), random.random(), float(parmagic.rng().random()))


def expected(seed, n_items):
    out = []
    for index in range(n_items):
        sequence = np.random.SeedSequence(seed).spawn(index + 1)[index]
        legacy = np.random.RandomState(sequence.generate_state(4)).rand()
        stdlib = random.Random(int.from_bytes(sequence.generate_state(4).tobytes(), "little"))
        generator = np.random.Generator(np.random.PCG64(sequence))
        out.append((float(legacy), stdlib.random(), float(generator.random())))
    return out


@pytest.mark.parametrize("settings", COMBINATIONS, ids=lambda s: "-".join(map(str, s.values())))
def test_the_same_seed_gives_each_item_the_same_numbers_however_it_runs(settings):
    assert pmap(draws, range(7), seed=11, **settings) == expected(11, 7)


def test_a_different_seed_gives_other_numbers_and_no_two_items_share_one():
    first, second = pmap(draws, range(6), n_jobs=2, seed=1), pmap(draws, range(6), n_jobs=2, seed=2)
    assert first != second
    assert len({item[0] for item in first}) == 6


def test_a_retried_item_draws_what_its_first_attempt_drew(tmp_path):
    flag = tmp_path / "failed-once"

    def flaky(index):
        value = float(np.random.rand())
        if index == 2 and not flag.exists():
            flag.write_text("")
            raise ConnectionError("first attempt")
        return value

    values = pmap(flaky, range(4), n_jobs=2, seed=5, retries=1)
    assert flag.exists()
    assert values == [item[0] for item in expected(5, 4)]


def test_cached_results_are_the_seeded_ones_and_a_new_seed_computes_again(tmp_path):
    def rand(_):
        return float(np.random.rand())

    first = pmap(rand, [7, 7, 7], n_jobs=2, seed=3, cache=tmp_path)
    assert len(set(first)) == 3  # the same item at another index: another stream
    assert pmap(rand, [7, 7, 7], n_jobs=2, seed=3, cache=tmp_path) == first
    assert parmagic.run(rand, [[7, 7, 7]], n_jobs=2, seed=4, cache=tmp_path).n_cached == 0


def test_rng_is_one_generator_for_the_whole_item():
    def two_draws(_):
        return parmagic.rng().random() != parmagic.rng().random()

    assert pmap(two_draws, range(3), n_jobs=2, seed=0) == [True] * 3


def test_a_seeded_run_in_this_process_leaves_the_notebooks_generators_alone():
    np.random.seed(123)
    random.seed(123)
    pmap(draws, range(3), backend="sequential", seed=9)
    assert np.random.rand() == np.random.RandomState(123).rand()
    assert random.random() == random.Random(123).random()


def test_with_threads_only_rng_is_reproducible_and_a_warning_says_so():
    def generator_draw(_):
        return float(parmagic.rng().random())

    with pytest.warns(UserWarning, match="only parmagic.rng"):
        values = pmap(generator_draw, range(6), n_jobs=2, backend="threading", seed=8)
    assert values == [item[2] for item in expected(8, 6)]


def legacy_draw(_):
    return float(np.random.rand())


def test_forked_workers_do_not_repeat_the_notebooks_numbers():
    np.random.seed(0)  # copied into every forked worker
    values = pmap(legacy_draw, range(8), n_jobs=2, backend="multiprocessing", batch_size=1)
    assert len(set(values)) == 8


@pytest.mark.parametrize("seed", [-1, 1.5, "0", True])
def test_a_seed_that_is_not_a_whole_number_is_an_input_error(seed):
    with pytest.raises(ParmagicInputError, match="seed must be a whole number"):
        pmap(abs, [1], seed=seed)


def test_without_a_run_rng_is_a_generator_of_its_own():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert 0 <= parmagic.rng().random() < 1


def test_after_a_seeded_run_workers_draw_apart_again():
    pmap(legacy_draw, range(6), n_jobs=2, seed=1)
    pmap(legacy_draw, range(6), n_jobs=2, seed=1, batch_size=6)  # one worker ran them all
    values = pmap(legacy_draw, range(8), n_jobs=2, batch_size=1)
    assert len(set(values)) == 8
