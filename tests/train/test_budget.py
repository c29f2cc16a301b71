"""Training to a time budget: the planning arithmetic, and whole runs of the planner on a simulated
clock (a slow first minute, sustained slowdowns, single slow epochs); the loop's use of it is in
test_train_loop."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from hnf.train.budget import (
    FINAL_PHASE,
    PACE_MARGIN,
    PACE_WINDOW,
    EpochBudget,
    budget_epoch,
    epochs_within_budget,
)


def test_epochs_within_a_time_budget() -> None:
    assert epochs_within_budget(100.0, spent_s=9.0, epochs_done=1, epoch_s=6.0, max_epochs=50) == 16
    assert epochs_within_budget(100.0, spent_s=20.0, epochs_done=2, epoch_s=10.0, max_epochs=50) == 10
    assert epochs_within_budget(100.0, spent_s=1.0, epochs_done=1, epoch_s=1.0, max_epochs=50) == 50
    assert epochs_within_budget(5.0, spent_s=9.0, epochs_done=1, epoch_s=9.0, max_epochs=50) == 1  # what ran stays
    assert [budget_epoch(w) for w in (0.0, 0.5, 1.0, 1.5)] == [1, 1, 1, 2]


def test_the_first_plan_uses_the_steady_steps_then_the_median_pace_both_ways() -> None:
    budget = EpochBudget(100.0, warmup_epochs=1.0, steps_per_epoch=10, max_epochs=200)
    assert PACE_MARGIN == pytest.approx(1.1) and PACE_WINDOW == 5
    budget.mark = (50.0, 3)  # the clock after the first three steps of epoch 1
    # steady: 0.4 s a step after the mark (the whole epoch took 5 s), 4.0 s an epoch + 0.6 s validation and checkpoint
    first = budget.plan(epoch=1, step=10, planned=200, spent_s=6.0, train_end=50.0 + 7 * 0.4, train_s=5.0, other_s=0.6)
    assert first == 1 + int(94.0 // (1.1 * 4.6)) == 19
    # epoch 2 takes 3 s: the median of (4.6, 3.0) is 3.8 s, no margin, 91 s left: the plan grows
    assert budget.plan(epoch=2, step=20, planned=19, spent_s=9.0, train_end=0.0, train_s=2.4, other_s=0.6) == 2 + int(91 // 3.8)
    # a slow epoch of 30 s among fast ones moves the median by one place only: (4.6, 3, 3, 30) -> 3.8 s
    spent = 12.0
    assert budget.plan(epoch=3, step=30, planned=25, spent_s=spent, train_end=0.0, train_s=2.4, other_s=0.6) == 3 + int(88 // 3.0)
    spent += 30.0
    assert budget.plan(epoch=4, step=40, planned=32, spent_s=spent, train_end=0.0, train_s=29.4, other_s=0.6) == 4 + int(58 // 3.8)


def test_no_plan_before_the_warm_up_is_over() -> None:
    budget = EpochBudget(100.0, warmup_epochs=2.0, steps_per_epoch=10, max_epochs=80)
    assert budget.plan(epoch=1, step=10, planned=80, spent_s=5.0, train_end=0.0, train_s=4.0, other_s=1.0) == 80


# --- whole runs on a simulated clock ------------------------------------------------------------

QUIET_TRAIN_S, OTHER_S, STEPS = 4.4, 0.6, 20  # 5 s an epoch, as the demo on the 2-core machine
BUDGET_S, MAX_EPOCHS = 420.0, 120  # a quiet run fits 84 epochs


@dataclass
class SimulatedRun:
    epochs: int
    end_s: float
    plans: list[int] = field(default_factory=list)  # the plan after each epoch
    note: str | None = None


def simulate(slowdown: Callable[[float, int], float], budget_s: float = BUDGET_S, noise: float = 0.03,
             seed: int = 0) -> SimulatedRun:
    """The training loop's calls to the planner (:func:`hnf.train.loop._train`) on a simulated
    clock: each step takes ``QUIET_TRAIN_S / STEPS`` seconds times ``slowdown(clock, epoch)`` times
    a seeded noise factor in [1 - noise, 1 + noise]; the first three steps of the run carry one-off
    costs (1 s each); validation and checkpoint take ``OTHER_S`` times the slowdown."""
    rng = random.Random(seed)
    now = 0.0
    budget = EpochBudget(budget_s, warmup_epochs=1.0, steps_per_epoch=STEPS, max_epochs=MAX_EPOCHS, clock=lambda: now)
    planned, epoch, step = MAX_EPOCHS, 0, 0
    plans = []
    while epoch < planned:
        start = now
        for _ in range(STEPS):
            factor = slowdown(now, epoch) * (1 + rng.uniform(-noise, noise))
            now += QUIET_TRAIN_S / STEPS * factor + (1.0 if step < 3 else 0.0)
            step += 1
            budget.after_step(step)
        train_end = now
        epoch += 1
        other = OTHER_S * slowdown(now, epoch)
        now += other
        planned = budget.plan(epoch, step, planned, now, train_end, train_end - start, other)
        plans.append(planned)
    return SimulatedRun(epoch, now, plans, budget.shortfall(epoch))


def quiet(now: float, epoch: int) -> float:
    return 1.0


def test_a_quiet_run_fills_its_budget() -> None:
    run = simulate(quiet)
    assert 80 <= run.epochs <= 84 and BUDGET_S - 5.5 <= run.end_s <= BUDGET_S
    assert run.note is None


@pytest.mark.parametrize("factor", [1.6, 2.0, 3.0])
def test_a_slow_first_minute_does_not_cut_the_schedule_for_good(factor: float) -> None:
    """Another process on one of the two cores for the first minute: the plan made then is short,
    and grows back when the pace returns. The run loses only what the slow minute itself cost."""
    slow = simulate(lambda now, epoch: factor if now < 60 else 1.0)
    baseline = simulate(quiet)
    lost = 60 * (1 - 1 / factor) / 5.0  # epochs of quiet pace the slow minute used
    assert slow.plans[0] < 0.75 * baseline.epochs  # planned in the slow minute
    assert slow.epochs >= baseline.epochs - lost - 2
    if factor <= 1.6:
        assert slow.epochs >= 0.94 * baseline.epochs  # within a few percent of the quiet run
    assert slow.end_s <= BUDGET_S and slow.note is None


@pytest.mark.parametrize("start_s", [0.0, 30.0, 150.0, 300.0, 360.0, 400.0, 409.0])
@pytest.mark.parametrize("factor", [1.5, 2.5])
def test_a_sustained_slowdown_ends_within_the_budget(start_s: float, factor: float) -> None:
    """The machine slows down at ``start_s`` and stays slow: the run stops in time, having used
    most of its budget."""
    run = simulate(lambda now, epoch: factor if now >= start_s else 1.0)
    assert run.end_s <= BUDGET_S
    assert run.end_s >= BUDGET_S - PACE_MARGIN * 1.05 * factor * 5.0 - 1.0  # at most about one epoch unused
    fits = start_s / 5.0 + (BUDGET_S - start_s) / (factor * 5.0)
    assert run.epochs >= fits - 3


def test_a_steady_drift_ends_within_the_budget() -> None:
    run = simulate(lambda now, epoch: 1.0 + now / 200.0)  # three times slower at the end
    assert run.end_s <= BUDGET_S and run.epochs >= 30


def test_single_slow_epochs_leave_the_plan_alone() -> None:
    """One epoch in ten four times slower: the median pace ignores them; the plan moves only by
    the time they took."""
    run = simulate(lambda now, epoch: 4.0 if epoch % 10 == 5 else 1.0, noise=0.0)
    spikes = sum(1 for epoch in range(run.epochs) if epoch % 10 == 5)
    quiet_epochs = simulate(quiet, noise=0.0).epochs
    assert run.epochs >= quiet_epochs - 3 * spikes - 1 and run.end_s <= BUDGET_S
    changes = [b - a for a, b in zip(run.plans[PACE_WINDOW:], run.plans[PACE_WINDOW + 1:])]
    assert all(change >= -4 for change in changes)  # a slow epoch costs its own time, not the rest of the run's


def test_the_final_phase_lengthens_only_within_itself() -> None:
    """A slow spell that cuts the plan into its final phase (progress >= 0.75) and then ends: the
    plan grows back only as far as keeps the progress at 0.75 or more (the learning rate stays
    under 0.146 of its peak), and most of the time the spell did not use is trained."""
    run = simulate(lambda now, epoch: 3.0 if 270 <= now < 340 else 1.0)
    final = next(i for i in range(1, len(run.plans)) if i + 1 >= FINAL_PHASE * run.plans[i - 1])
    assert all((epoch + 1) / plan >= FINAL_PHASE for epoch, plan in enumerate(run.plans[final:], start=final))
    assert max(run.plans[final:]) > min(run.plans[final:])  # it did grow back
    assert BUDGET_S - 15.0 <= run.end_s <= BUDGET_S


def test_a_run_slowed_for_good_says_so() -> None:
    """Slowed 2.5 times from the 30th second on: far fewer epochs than the run's quiet pace fits,
    and the note says so with the numbers."""
    run = simulate(lambda now, epoch: 2.5 if now >= 30 else 1.0)
    assert run.epochs < 0.7 * 84
    assert run.note is not None and run.note.startswith("the machine was busy: trained ")
    assert f"trained {run.epochs} epochs" in run.note and "s an epoch" in run.note
