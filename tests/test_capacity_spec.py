"""The capacity sweep compares batch sizes at an equal number of parameter updates (issue 23): batch 400 trains 4x
the epochs of batch 100, so only Theorem 1's rank condition changes between them."""

from __future__ import annotations

import math

from bench.sweep.spec import load_spec, validate_spec


def test_capacity_points_make_the_same_number_of_updates_at_every_budget():
    spec = load_spec("capacity")
    validate_spec(spec)  # every trial's RunConfig valid, memory included
    for name, budget in spec.budgets.items():
        train = budget.train_size or 50_000  # the full budget: MNIST's default split
        updates = {}
        for point in spec.points(budget):
            config = spec.config(point, budget, seed=0).validate()
            updates[point.label] = config.epochs * math.ceil(train / config.batch_size)
        assert len(set(updates.values())) == 1, (name, updates)
        batches = {spec.config(p, budget, seed=0).batch_size for p in spec.points(budget)}
        assert batches == {100, 400}, name
