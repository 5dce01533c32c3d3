import numpy as np
import pytest

from nerdistill.student.plan import RunPlan
from nerdistill.student.sampling import ScheduledBatchSampler, distilled_counts
from nerdistill.student.schedules import Distilled, Linear, Original, Sequential, Sigmoid, SimpleMix

N_ORIGINAL, N_DISTILLED = 300, 700


def plan(
    schedule, steps_per_epoch=50, epochs=4, batch_size=16, world_size=1, n_original=N_ORIGINAL, n_distilled=N_DISTILLED
) -> RunPlan:
    return RunPlan(
        schedule, n_original, n_distilled, batch_size, steps_per_epoch, epochs, steps_per_epoch * epochs, world_size
    )


def make(
    schedule, steps_per_epoch=50, epochs=4, batch_size=16, world_size=1, seed=7, **kwargs
) -> ScheduledBatchSampler:
    return ScheduledBatchSampler(plan(schedule, steps_per_epoch, epochs, batch_size, world_size), seed=seed, **kwargs)


def all_batches(sampler: ScheduledBatchSampler, epochs: int) -> list[list[int]]:
    batches = []
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        batches.extend(sampler)
    return batches


def realised(batches) -> np.ndarray:
    return np.array([np.mean(np.array(b) >= N_ORIGINAL) for b in batches])


LENGTHS = np.random.default_rng(0).integers(4, 80, N_ORIGINAL + N_DISTILLED)


@pytest.mark.parametrize("sort_window", [0, 25])
@pytest.mark.parametrize(
    "schedule", [Sigmoid(), Linear(), SimpleMix(mix=0.3), Sequential(switch=0.5), Linear(order="original_first")]
)
def test_realised_share_follows_schedule_over_windows(schedule, sort_window):
    sampler = make(schedule, lengths=LENGTHS, sort_window=sort_window)
    shares = realised(all_batches(sampler, 4))
    target = np.array([schedule(t / 200) for t in range(200)])
    for start in range(0, 200, 10):
        assert abs(shares[start : start + 10].mean() - target[start : start + 10].mean()) <= 0.02


def test_length_aware_batches_keep_each_steps_composition():
    plain = realised(all_batches(make(Sigmoid()), 4))
    sorted_ = all_batches(make(Sigmoid(), lengths=LENGTHS, sort_window=25), 4)
    assert np.array_equal(plain, realised(sorted_))
    spread = np.mean([np.ptp(LENGTHS[b]) for b in sorted_])
    random_spread = np.mean([np.ptp(LENGTHS[b]) for b in all_batches(make(Sigmoid()), 4)])
    assert spread < random_spread / 3


def test_deterministic_for_a_seed_and_different_across_seeds():
    first = all_batches(make(Sigmoid(), lengths=LENGTHS, sort_window=25), 2)
    again = all_batches(make(Sigmoid(), lengths=LENGTHS, sort_window=25), 2)
    assert first == again
    other = make(Sigmoid(), seed=8)
    assert all_batches(other, 1) != first[:50]


def test_epoch_plan_does_not_depend_on_what_ran_before():
    """Resuming at epoch 2 yields the batches an uninterrupted run would have had."""
    uninterrupted = all_batches(make(Sigmoid(), lengths=LENGTHS, sort_window=25), 3)[100:]
    resumed = make(Sigmoid(), lengths=LENGTHS, sort_window=25)
    resumed.set_epoch(2)
    assert list(resumed) == uninterrupted


@pytest.mark.parametrize("sort_window", [0, 25])
def test_every_example_is_drawn_once_before_any_repeats(sort_window):
    batches = all_batches(make(SimpleMix(mix=0.5), lengths=LENGTHS, sort_window=sort_window), 4)
    drawn = np.concatenate(batches)
    original = [int(i) for i in drawn if i < N_ORIGINAL]
    distilled = [int(i) for i in drawn if i >= N_ORIGINAL]
    # pass k covers the pool exactly once; passes may only straddle inside a sort window
    assert sorted(original[:N_ORIGINAL]) == list(range(N_ORIGINAL)) or sort_window
    assert set(original) == set(range(N_ORIGINAL))
    assert set(distilled) == set(range(N_ORIGINAL, N_ORIGINAL + N_DISTILLED))
    counts = np.bincount(drawn, minlength=N_ORIGINAL + N_DISTILLED)
    assert counts[:N_ORIGINAL].max() - counts[:N_ORIGINAL].min() <= 1
    assert counts[N_ORIGINAL:].max() - counts[N_ORIGINAL:].min() <= 1


def test_ranks_share_one_plan_and_split_it():
    world = [make(Sigmoid(), batch_size=8, rank=r, world_size=2, lengths=LENGTHS, sort_window=25) for r in range(2)]
    single_global = make(Sigmoid(), batch_size=8, rank=0, world_size=2, lengths=LENGTHS, sort_window=25).global_batches(
        0
    )
    shards = [list(s) for s in world]
    for step, batch in enumerate(single_global):
        together = sorted(shards[0][step] + shards[1][step])
        assert together == sorted(batch.tolist())
    assert len(shards[0][0]) == len(shards[1][0]) == 8


def test_single_pool_schedules_and_missing_pools():
    assert realised(all_batches(make(Original()), 1)).max() == 0
    assert realised(all_batches(make(Distilled()), 1)).min() == 1
    with pytest.raises(ValueError, match="distilled pool is empty"):
        ScheduledBatchSampler(plan(Sigmoid(), 5, 1, 4, n_original=10, n_distilled=0))
    with pytest.raises(ValueError, match="original pool is empty"):
        ScheduledBatchSampler(plan(Sigmoid(), 5, 1, 4, n_original=0, n_distilled=10))


def test_error_diffusion_keeps_running_total_within_half_an_example():
    counts = distilled_counts(plan(SimpleMix(mix=0.37), steps_per_epoch=100, epochs=1, batch_size=10))
    assert np.all(np.abs(np.cumsum(counts) - 3.7 * np.arange(1, 101)) <= 0.5 + 1e-9)


@pytest.mark.parametrize("schedule", [Original(), SimpleMix(mix=0.5)])
def test_a_window_longer_than_its_pool_never_puts_an_example_twice_in_a_batch(schedule):
    # 25 steps x 16 = 400 draws per window from 300 gold examples (and from 700 distilled ones
    # across permutation boundaries): sorting by length alone put copies side by side
    batches = all_batches(make(schedule, lengths=LENGTHS, sort_window=25), 4)
    assert all(len(set(b)) == len(b) for b in batches)
    spread = np.mean([np.ptp(LENGTHS[b]) for b in batches])
    assert spread < np.ptp(LENGTHS) / 5
