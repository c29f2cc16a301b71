"""Training to a time budget: how many epochs fit, planned after the warm-up and re-planned after
every epoch from a robust pace, in both directions until the final decay phase.

A budgeted run (``TrainConfig.time_budget_s``, ``B`` seconds) treats ``epochs`` as an upper bound
``E_max``. Its learning rate follows a cosine over the planned length, so the plan must exist
when the warm-up ends (:func:`budget_epoch`); during the warm-up the rate does not depend on it.

**Samples.** Each epoch from the first plan on gives one sample ``t_i``, its seconds of training,
validation and checkpoint. The warm-up epoch's sample counts only its steady steps (those after
the first ``PACE_SKIP_STEPS``, which carry one-off costs), scaled to a whole epoch.

**Pace.** The planning pace after epoch ``e`` is the median of the last ``PACE_WINDOW`` samples,

    p_e = median(t_{e-W+1}, ..., t_e)         (W = PACE_WINDOW = 5),

times ``PACE_MARGIN`` (1.1) at the first plan, when there is one sample only. A median of five
ignores up to two outlying epochs, so one slow epoch moves nothing; a slowdown that lasts three
epochs or more is followed after three, and so is the return to the usual pace.

**Plan.** With ``s_e`` seconds spent (training, validation, checkpoints) and ``L = B - s_e`` left,

    target_e = clamp(e + floor(L / p_e), e, E_max),

and the run stops at once (``target_e = e``) when ``L < PACE_MARGIN * max(p_e, t_e)``: the next
epoch would not fit at the median pace nor at the last epoch's.

**Both directions, then within the final phase.** While ``e < FINAL_PHASE * N`` (``N`` the
current plan, ``FINAL_PHASE`` = 0.75) the plan becomes ``target_e``, longer or shorter. A plan cut
by a slow spell early in the run therefore grows back when the pace returns: the epochs lost are
only the ones the slow spell itself used, ``(slow seconds) * (1 - quiet pace / slow pace) / quiet
pace``, not the whole rest of the run (the earlier planner, which only shortened, fell from about
84 to 7 epochs on a busy demo run). Lengthening from progress ``e/N`` to ``e/N'`` raises the
cosine factor ``(1 + cos(pi * e / N)) / 2``; from ``FINAL_PHASE`` on that factor is below
``(1 + cos(0.75 pi)) / 2 = 0.146``, and a large rise there would undo the annealing. So once
``e >= FINAL_PHASE * N`` the plan is

    N' = min(target_e, max(N, floor(e / FINAL_PHASE))),

shorter as needed, longer only as far as keeps ``e / N' >= FINAL_PHASE``: the factor never rises
above 0.146 again, and a slow spell that cut the plan late in the run still trains most of the
time it left (in the test's spell of 70 s at a third of the pace from 64% of the budget, the run
ends 5 s before its budget instead of 55 s).

**Within the budget.** The run begins epoch ``e + 1`` only when ``L >= 1.1 * max(p_e, t_e)``, so
it ends within ``B`` unless that epoch is slower than both the last one and the median by more
than the margin: an overrun needs a slowdown that begins in the very last epoch, and is at most
that epoch's excess. A sustained slowdown is in ``t_e`` from its first epoch, so the run stops in
time; the median lags it by at most three epochs, which costs no overrun (the stop rule uses
``t_e``), only a plan that ends a little early, with the rate already near zero.

**Shortfall.** The fastest pace of the run, ``p* = min_e p_e`` (no margin), is the best estimate
of the machine's quiet pace; at it the budget fits ``Q = clamp(e_1 + floor((B - s_1) / p*), e_1,
E_max)`` epochs (``e_1``, ``s_1``: the first plan's epoch and seconds spent).
:meth:`EpochBudget.shortfall` reports a run that trained fewer than ``SHORTFALL_RATIO * Q``
(70%) of them: the machine was busy, and the scores are lower than a quiet machine's.

**Resume.** The plan is ``epochs`` in the run's ``config.json``, written whenever it changes and
before the epoch's checkpoint; a resumed run keeps it (the loop builds no planner once the first
plan is made), so its learning-rate schedule is the one the checkpoint was trained under.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable

PACE_SKIP_STEPS = 3
PACE_MARGIN = 1.1
PACE_WINDOW = 5
FINAL_PHASE = 0.75
SHORTFALL_RATIO = 0.7


def budget_epoch(warmup_epochs: float) -> int:
    """The epoch after which a budgeted run first plans: the first one that ends with the warm-up
    over."""
    return max(1, math.ceil(warmup_epochs))


def epochs_within_budget(budget_s: float, spent_s: float, epochs_done: int, epoch_s: float,
                         max_epochs: int) -> int:
    """How many epochs fit ``budget_s`` when ``epochs_done`` took ``spent_s`` and each further
    one takes ``epoch_s``: ``epochs_done + floor((budget_s - spent_s) / epoch_s)``, at least
    ``epochs_done`` (those are run) and at most ``max_epochs``."""
    more = math.floor((budget_s - spent_s) / max(epoch_s, 1e-9))
    return max(epochs_done, min(max_epochs, epochs_done + more))


class EpochBudget:
    """The planner of one budgeted run: the loop calls :meth:`after_step` after every optimiser
    step and :meth:`plan` after every epoch's validation (the rules are in the module's text).

    ``max_epochs`` is the upper bound ``E_max``; ``clock`` gives seconds (``time.perf_counter``;
    tests pass a simulated one)."""

    def __init__(self, budget_s: float, warmup_epochs: float, steps_per_epoch: int, max_epochs: int,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self.budget_s = budget_s
        self.first_plan_epoch = budget_epoch(warmup_epochs)
        self.steps_per_epoch = steps_per_epoch
        self.max_epochs = max_epochs
        self.clock = clock
        self.mark: tuple[float, int] | None = None  # (clock, step) after the skipped steps
        self.first: tuple[float, int] | None = None  # (clock, step) after the first step seen
        self.samples: list[float] = []  # seconds of each epoch from the first plan on
        self.paces: list[float] = []  # the planning pace of each plan, without margin
        self.first_spent: float | None = None  # seconds spent at the first plan

    def after_step(self, step: int) -> None:
        """Note the clock after the first step this planner sees and once ``PACE_SKIP_STEPS``
        steps of the current epoch are done."""
        if self.first is None:
            self.first = (self.clock(), step)
        if step % self.steps_per_epoch == min(PACE_SKIP_STEPS, self.steps_per_epoch - 1):
            self.mark = (self.clock(), step)

    def _steady_epoch_s(self, step: int, train_end: float, train_s: float) -> float:
        """The first plan's training seconds per epoch: the steps after the mark, else those after
        the first step seen (a run resumed inside its warm-up epoch), scaled to a whole epoch."""
        for start in (self.mark, self.first):
            if start is not None and step > start[1]:
                return (train_end - start[0]) / (step - start[1]) * self.steps_per_epoch
        return train_s

    def plan(self, epoch: int, step: int, planned: int, spent_s: float, train_end: float,
             train_s: float, other_s: float) -> int:
        """The epochs to run after ``epoch`` epochs (``step`` steps) took ``spent_s`` in all, the
        last one ``train_s`` of training that ended at clock ``train_end`` and ``other_s`` of
        validation and checkpoint; ``planned`` is the current plan (``max_epochs`` before the
        first)."""
        if epoch < self.first_plan_epoch:
            return planned
        if not self.samples:
            sample = self._steady_epoch_s(step, train_end, train_s) + other_s
            self.first_spent = spent_s
        else:
            sample = train_s + other_s
        self.samples.append(sample)
        pace = statistics.median(self.samples[-PACE_WINDOW:])
        self.paces.append(pace)
        if self.budget_s - spent_s < PACE_MARGIN * max(pace, sample):
            target = epoch  # the next epoch would not fit at the median pace nor at the last one's
        else:
            margin = PACE_MARGIN if len(self.samples) == 1 else 1.0
            target = epochs_within_budget(self.budget_s, spent_s, epoch, margin * pace, self.max_epochs)
        if len(self.samples) > 1 and epoch >= FINAL_PHASE * planned:  # in the final phase: stay there
            return min(target, max(planned, math.floor(epoch / FINAL_PHASE)))
        return target

    def quiet_epochs(self) -> int | None:
        """``Q``: the epochs the budget fits at the run's fastest planning pace (None before the
        first plan)."""
        if not self.paces or self.first_spent is None:
            return None
        return epochs_within_budget(self.budget_s, self.first_spent, self.first_plan_epoch, min(self.paces),
                                    self.max_epochs)

    def shortfall(self, epochs_done: int) -> str | None:
        """A plain sentence when ``epochs_done`` is under ``SHORTFALL_RATIO`` of :meth:`quiet_epochs`
        (the machine was busy), else None."""
        quiet = self.quiet_epochs()
        if quiet is None or epochs_done >= SHORTFALL_RATIO * quiet:
            return None
        return (f"the machine was busy: trained {epochs_done} epochs, {epochs_done / quiet:.0%} of the {quiet} "
                f"that fit the time budget at this run's fastest pace ({min(self.paces):.1f} s an epoch); "
                "the scores are lower than a quiet machine's")
