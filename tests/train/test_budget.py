"""Training to a time budget: the planning arithmetic (the loop's use of it is in test_train_loop)."""

from __future__ import annotations

import pytest

from hnf.train.budget import PACE_MARGIN, MIN_MEASURED_EPOCHS, EpochBudget, budget_epoch, epochs_within_budget


def test_epochs_within_a_time_budget() -> None:
    assert epochs_within_budget(100.0, spent_s=9.0, epochs_done=1, epoch_s=6.0, max_epochs=50) == 16
    assert epochs_within_budget(100.0, spent_s=20.0, epochs_done=2, epoch_s=10.0, max_epochs=50) == 10
    assert epochs_within_budget(100.0, spent_s=1.0, epochs_done=1, epoch_s=1.0, max_epochs=50) == 50
    assert epochs_within_budget(5.0, spent_s=9.0, epochs_done=1, epoch_s=9.0, max_epochs=50) == 1  # what ran stays
    assert [budget_epoch(w) for w in (0.0, 0.5, 1.0, 1.5)] == [1, 1, 1, 2]


def test_the_first_plan_uses_the_steady_steps_and_later_plans_only_shorten() -> None:
    budget = EpochBudget(100.0, warmup_epochs=1.0, steps_per_epoch=10)
    assert PACE_MARGIN == pytest.approx(1.1)
    budget.mark = (50.0, 3)  # the clock after the first three steps of epoch 1
    # steady: 0.4 s a step after the mark (the whole epoch took 5 s), 4.0 s an epoch + 0.6 s validation and checkpoint
    first = budget.plan(epoch=1, step=10, planned=200, spent_s=6.0, train_end=50.0 + 7 * 0.4, train_s=5.0, other_s=0.6)
    assert first == 1 + int(94.0 // (1.1 * 4.6)) == 19
    # the next epochs: no plan until five of them have run; then the mean of all measured, which
    # would fit more here, but the plan never grows (the learning rate only falls)
    spent = 6.0
    for epoch in range(2, 2 + MIN_MEASURED_EPOCHS):
        spent += 3.0
        assert budget.plan(epoch=epoch, step=10 * epoch, planned=19, spent_s=spent, train_end=0.0,
                           train_s=2.4, other_s=0.6) == 19
    # a slow epoch of 30 s: the mean of all six measured, (5 * 3 + 30) / 6 = 7.5 s, with
    # 100 - 51 = 49 s left: 6 more
    assert budget.plan(epoch=7, step=70, planned=19, spent_s=spent + 30.0, train_end=0.0, train_s=29.4,
                       other_s=0.6) == 7 + 6


def test_no_plan_before_the_warm_up_is_over() -> None:
    budget = EpochBudget(100.0, warmup_epochs=2.0, steps_per_epoch=10)
    assert budget.plan(epoch=1, step=10, planned=80, spent_s=5.0, train_end=0.0, train_s=4.0, other_s=1.0) == 80
