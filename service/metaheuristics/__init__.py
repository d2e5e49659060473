"""Metaheuristics as ask/tell optimisers over a mixed search space (no database, no Celery).

A library, not a job family: optimisation jobs run them in a worker (service/optimize),
and hyperparameter searches ask them for trials in the dispatcher (service/search).

Every optimiser works in the unit cube [0, 1]^d; `Space` maps a unit vector to named
values (ints rounded, log-scaled floats, categories by equal bins) and back. So one
implementation of each algorithm searches any mix of int, float and categorical
parameters, and the benchmark functions as well.
"""

from service.metaheuristics.abc import ArtificialBeeColony
from service.metaheuristics.aco import AntColonyR
from service.metaheuristics.base import Dimension, Optimizer, Space, minimize
from service.metaheuristics.bfo import BacterialForaging
from service.metaheuristics.ga import GeneticAlgorithm
from service.metaheuristics.pso import ParticleSwarm
from service.metaheuristics.random_search import RandomSearch
from service.metaheuristics.sa import SimulatedAnnealing
from service.metaheuristics.tabu import TabuSearch

# Every optimiser by the name a spec uses for it ("strategy"); random search is the baseline.
OPTIMIZERS: dict[str, type[Optimizer]] = {
    cls.name: cls
    for cls in (
        RandomSearch,
        GeneticAlgorithm,
        SimulatedAnnealing,
        TabuSearch,
        AntColonyR,
        ParticleSwarm,
        BacterialForaging,
        ArtificialBeeColony,
    )
}
# The course's seven metaheuristics, in the course's order: every optimiser but the random baseline.
METAHEURISTICS: tuple[str, ...] = tuple(name for name in OPTIMIZERS if name != RandomSearch.name)

__all__ = ["METAHEURISTICS", "OPTIMIZERS", "Dimension", "Optimizer", "Space", "minimize"]
