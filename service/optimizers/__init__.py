"""Metaheuristics as ask/tell optimisers over a mixed search space (no database, no Celery).

They live in `service` because both sides use them: the search driver (in the dispatcher)
asks them for trials, and optimisation jobs run them in a worker.

Every optimiser works in the unit cube [0, 1]^d; `Space` maps a unit vector to named
values (ints rounded, log-scaled floats, categories by equal bins) and back. So one
implementation of each algorithm searches any mix of int, float and categorical
parameters, and the benchmark functions as well.
"""
from service.optimizers.base import Optimizer, Space, minimize, register, strategies

__all__ = ["Optimizer", "Space", "minimize", "register", "strategies"]
