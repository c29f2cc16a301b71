"""Training to a time budget: how many epochs fit, planned after the warm-up, re-planned as the
pace drifts.

A budgeted run (``TrainConfig.time_budget_s``) treats ``epochs`` as an upper bound. It plans when
the warm-up is over, so that every step of the cosine decay already knows where the schedule ends:

    epochs = done + floor((budget - spent) / (margin * seconds per epoch))

with the seconds per epoch taken from the steady part of that epoch (the steps after the first
``PACE_SKIP_STEPS``, which carry one-off costs) plus validation and checkpoint, and
``PACE_MARGIN`` on top. Once ``MIN_MEASURED_EPOCHS`` more epochs have run, it plans again after
each from the mean of all epochs since the first plan (no margin: the pace is measured, and the
error shrinks with the epochs left) and shortens the schedule when the rest would overrun the
budget: a shared machine's pace drifts (4.1 to 7.4 s per epoch within one demo run on the 2-core
machine). It never lengthens the schedule, so the learning rate only ever falls; the mean over
all measured epochs, not a short recent window, keeps a passing slow spell from cutting it for
good (with the last five epochs, a demo run ended 1.3 minutes inside its budget).
"""

from __future__ import annotations

import math
import time

PACE_SKIP_STEPS = 3
PACE_MARGIN = 1.1
MIN_MEASURED_EPOCHS = 5


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
    step and :meth:`plan` after every epoch's validation."""

    def __init__(self, budget_s: float, warmup_epochs: float, steps_per_epoch: int) -> None:
        self.budget_s = budget_s
        self.first_plan_epoch = budget_epoch(warmup_epochs)
        self.steps_per_epoch = steps_per_epoch
        self.mark: tuple[float, int] | None = None  # (clock, step) after the skipped steps
        self.measured: list[float] = []  # seconds of each epoch after the first plan

    def after_step(self, step: int) -> None:
        """Note the clock once ``PACE_SKIP_STEPS`` steps of the current epoch are done."""
        if step % self.steps_per_epoch == min(PACE_SKIP_STEPS, self.steps_per_epoch - 1):
            self.mark = (time.perf_counter(), step)

    def plan(self, epoch: int, step: int, planned: int, spent_s: float, train_end: float,
             train_s: float, other_s: float) -> int:
        """The epochs to run after ``epoch`` epochs (``step`` steps) took ``spent_s`` in all, the
        last one ``train_s`` of training that ended at clock ``train_end`` and ``other_s`` of
        validation and checkpoint; ``planned`` is the current plan (the upper bound before the
        first plan)."""
        if epoch < self.first_plan_epoch:
            return planned
        if epoch == self.first_plan_epoch:
            if self.mark is not None and step > self.mark[1]:
                train_s = (train_end - self.mark[0]) / (step - self.mark[1]) * self.steps_per_epoch
            epoch_s = PACE_MARGIN * (train_s + other_s)
        else:
            self.measured.append(train_s + other_s)
            if len(self.measured) < MIN_MEASURED_EPOCHS:  # one epoch's time alone is too noisy to act on
                return planned
            epoch_s = sum(self.measured) / len(self.measured)
        return epochs_within_budget(self.budget_s, spent_s, epoch, epoch_s, planned)
