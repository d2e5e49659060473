"""Ant Colony System for the travelling salesman problem (Dorigo & Gambardella 1997).

Each ant builds a tour city by city: with probability q0 it takes the best edge by
tau^alpha * eta^beta (eta = 1/distance), otherwise it draws one in proportion to that product
(the Ant System rule). Every edge used is pulled back towards tau0 (local update, so ants of
one iteration spread out); after each iteration only the best tour so far deposits pheromone
(global update with rate `evaporation`). With q0 = 0 and local_evaporation = 0 this is close to
the random-proportional rule of the original Ant System.

Each constructed tour is one evaluation and the count is exact: the last iteration sends only
the ants that are left. `local_search=True` adds a 2-opt pass on each iteration's best tour;
those improvement steps are NOT counted as evaluations (they compare edge swaps, not tours),
which is why it is off by default.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

# solve_tsp's tunable arguments, described and bounded as the metaheuristics' PARAMS and BOUNDS are.
PARAMS = {
    "ants": (10, "tours built per iteration (Dorigo & Gambardella used 10)"),
    "alpha": (1.0, "weight of the pheromone in the choice of the next city"),
    "beta": (2.0, "weight of the closeness (1/distance); 2-5 works well"),
    "evaporation": (0.1, "rho, the global update's rate on the best tour's edges"),
    "q0": (0.9, "chance of taking the best-scored edge instead of drawing one"),
    "local_evaporation": (0.1, "xi, how far each used edge is pulled back towards the initial pheromone"),
    "local_search": (False, "2-opt on each iteration's best tour (its steps are not counted as evaluations)"),
}
BOUNDS = {
    "ants": (1, 10_000),
    "alpha": (0.0, 10.0),
    "beta": (0.0, 10.0),
    "evaporation": (0.0, 1.0),
    "q0": (0.0, 1.0),
    "local_evaporation": (0.0, 1.0),
}

TourCallback = Callable[[int, float], None]  # (tours so far, best length so far)


def tour_length(dist: np.ndarray, tour) -> float:
    t = np.asarray(tour)
    return float(dist[t, np.roll(t, -1)].sum())


def distances(coords: np.ndarray) -> np.ndarray:
    coords = np.asarray(coords, dtype=float)
    return np.sqrt(((coords[:, None, :] - coords[None, :, :]) ** 2).sum(-1))


def two_opt(dist: np.ndarray, tour) -> np.ndarray:
    """Best-improvement 2-opt until no reversal shortens the tour."""
    t = np.array(tour)
    n = len(t)
    i, j = np.triu_indices(n, k=2)
    valid = ~((i == 0) & (j == n - 1))  # those two edges are adjacent in the cycle
    i, j = i[valid], j[valid]
    while n > 3:
        a, b = t[i], t[(i + 1) % n]
        c, e = t[j], t[(j + 1) % n]
        delta = dist[a, c] + dist[b, e] - dist[a, b] - dist[c, e]
        best = int(np.argmin(delta))
        if delta[best] >= -1e-12:
            break
        t[i[best] + 1 : j[best] + 1] = t[i[best] + 1 : j[best] + 1][::-1]
    return t


def two_opt_best(coords: np.ndarray, starts: int = 50, seed: int = 0) -> tuple[list[int], float]:
    """Reference: the shortest tour that 2-opt reaches from `starts` random permutations."""
    dist = distances(coords)
    rng = np.random.default_rng(seed)
    best, best_len = None, np.inf
    for _ in range(starts):
        t = two_opt(dist, rng.permutation(len(dist)))
        length = tour_length(dist, t)
        if length < best_len:
            best, best_len = t, length
    return [int(c) for c in best], best_len


def _nearest_neighbour_length(dist: np.ndarray) -> float:
    n, here, seen, total = len(dist), 0, {0}, 0.0
    for _ in range(n - 1):
        d = dist[here].copy()
        d[list(seen)] = np.inf
        nxt = int(np.argmin(d))
        total += d[nxt]
        seen.add(nxt)
        here = nxt
    return total + dist[here, 0]


def solve_tsp(
    coords: np.ndarray,
    evaluations: int,
    seed: int = 0,
    ants: int = 10,
    alpha: float = 1.0,
    beta: float = 2.0,
    evaporation: float = 0.1,
    q0: float = 0.9,
    local_evaporation: float = 0.1,
    local_search: bool = False,
    should_stop: Callable[[], bool] = lambda: False,
    on_tour: TourCallback | None = None,
) -> tuple[list[int], float, list[float]]:
    """Run ACS for exactly `evaluations` tours; return (best tour, its length, best after each tour).

    `should_stop` is asked before each tour: when it says so, the tours so far are the answer.
    """
    dist = distances(coords)
    n = len(dist)
    rng = np.random.default_rng(seed)
    eta = 1.0 / (dist + np.eye(n))  # the diagonal is never used; avoid dividing by 0
    np.fill_diagonal(eta, 0.0)
    heur = eta**beta
    tau0 = 1.0 / (n * _nearest_neighbour_length(dist))
    tau = np.full((n, n), tau0)
    best, best_len, curve = None, np.inf, []
    while len(curve) < evaluations:
        it_best, it_len = None, np.inf
        for _ in range(min(ants, evaluations - len(curve))):
            if should_stop():
                return _as_list(best), float(best_len), curve
            tour = _construct(tau, heur, alpha, q0, local_evaporation, tau0, rng)
            length = tour_length(dist, tour)
            if length < it_len:
                it_best, it_len = tour, length
            if length < best_len:
                best, best_len = tour, length
            curve.append(best_len)
            if on_tour is not None:
                on_tour(len(curve), best_len)
        if local_search:
            it_best = two_opt(dist, it_best)
            it_len = tour_length(dist, it_best)
            if it_len < best_len:
                best, best_len = it_best, it_len
                curve[-1] = best_len
        # Global update: only the best-so-far tour's edges evaporate and receive pheromone.
        a, b = best, np.roll(best, -1)
        tau[a, b] = tau[b, a] = (1 - evaporation) * tau[a, b] + evaporation / best_len
    return _as_list(best), float(best_len), curve


def random_tours(
    coords: np.ndarray,
    evaluations: int,
    seed: int = 0,
    should_stop: Callable[[], bool] = lambda: False,
    on_tour: TourCallback | None = None,
) -> tuple[list[int], float, list[float]]:
    """The baseline: uniformly random tours, with solve_tsp's arguments and answer."""
    dist = distances(coords)
    rng = np.random.default_rng(seed)
    best, best_len, curve = None, np.inf, []
    while len(curve) < evaluations and not should_stop():
        tour = rng.permutation(len(dist))
        length = tour_length(dist, tour)
        if length < best_len:
            best, best_len = tour, length
        curve.append(best_len)
        if on_tour is not None:
            on_tour(len(curve), best_len)
    return _as_list(best), float(best_len), curve


def _as_list(tour) -> list[int]:
    return [] if tour is None else [int(c) for c in tour]  # None: stopped before the first tour


def _construct(tau, heur, alpha, q0, xi, tau0, rng) -> np.ndarray:
    n = len(tau)
    tour = np.empty(n, dtype=int)
    tour[0] = here = rng.integers(n)
    free = np.ones(n, dtype=bool)
    free[here] = False
    for step in range(1, n):
        score = (tau[here] ** alpha if alpha != 1 else tau[here]) * heur[here] * free
        if rng.random() < q0:
            nxt = int(np.argmax(score))  # exploitation
        else:
            total = score.sum()  # biased exploration (Ant System rule)
            nxt = int(rng.choice(n, p=score / total)) if total > 0 else int(np.flatnonzero(free)[0])
        # Local update pulls a used edge back towards tau0, steering later ants elsewhere.
        tau[here, nxt] = tau[nxt, here] = (1 - xi) * tau[here, nxt] + xi * tau0
        tour[step] = here = nxt
        free[nxt] = False
    return tour
