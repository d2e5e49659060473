"""One module per metaheuristic; importing this package registers them all."""
from service.optimizers.algorithms import random_search  # noqa: F401
from service.optimizers.algorithms import abc, bfo, pso  # noqa: F401
from service.optimizers.algorithms import aco, ga, sa, tabu  # noqa: F401
