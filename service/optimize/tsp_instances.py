"""Named travelling-salesman instances: two classics from TSPLIB with their proven optima, and
seeded random ones.

TSPLIB's optima are in its EUC_2D metric, where each edge's length is rounded to the nearest
integer; `tsplib_length` measures a tour that way, so a gap to the optimum compares like with like.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# TSPLIB berlin52 (Groetschel): 52 locations in Berlin; optimal tour 7542.
BERLIN52 = (
    (565, 575),
    (25, 185),
    (345, 750),
    (945, 685),
    (845, 655),
    (880, 660),
    (25, 230),
    (525, 1000),
    (580, 1175),
    (650, 1130),
    (1605, 620),
    (1220, 580),
    (1465, 200),
    (1530, 5),
    (845, 680),
    (725, 370),
    (145, 665),
    (415, 635),
    (510, 875),
    (560, 365),
    (300, 465),
    (520, 585),
    (480, 415),
    (835, 625),
    (975, 580),
    (1215, 245),
    (1320, 315),
    (1250, 400),
    (660, 180),
    (410, 250),
    (420, 555),
    (575, 665),
    (1150, 1160),
    (700, 580),
    (685, 595),
    (685, 610),
    (770, 610),
    (795, 645),
    (720, 635),
    (760, 650),
    (475, 960),
    (95, 260),
    (875, 920),
    (700, 500),
    (555, 815),
    (830, 485),
    (1170, 65),
    (830, 610),
    (605, 625),
    (595, 360),
    (1340, 725),
    (1740, 245),
)

# TSPLIB eil51 (Christofides & Eilon): 51 cities; optimal tour 426.
EIL51 = (
    (37, 52),
    (49, 49),
    (52, 64),
    (20, 26),
    (40, 30),
    (21, 47),
    (17, 63),
    (31, 62),
    (52, 33),
    (51, 21),
    (42, 41),
    (31, 32),
    (5, 25),
    (12, 42),
    (36, 16),
    (52, 41),
    (27, 23),
    (17, 33),
    (13, 13),
    (57, 58),
    (62, 42),
    (42, 57),
    (16, 57),
    (8, 52),
    (7, 38),
    (27, 68),
    (30, 48),
    (43, 67),
    (58, 48),
    (58, 27),
    (37, 69),
    (38, 46),
    (46, 10),
    (61, 33),
    (62, 63),
    (63, 69),
    (32, 22),
    (45, 35),
    (59, 15),
    (5, 6),
    (10, 17),
    (21, 10),
    (5, 64),
    (30, 15),
    (39, 10),
    (32, 39),
    (25, 32),
    (25, 55),
    (48, 28),
    (56, 37),
    (30, 40),
)


@dataclass(frozen=True)
class Instance:
    name: str
    title: str
    cities: tuple[tuple[float, float], ...]
    optimum: int | None = None  # the shortest tour's tsplib_length, where it is known


def _random_cities(count: int, seed: int) -> tuple[tuple[float, float], ...]:
    # Rounded so that the stored coordinates read the same everywhere they are shown.
    return tuple((x, y) for x, y in np.random.default_rng(seed).random((count, 2)).round(6).tolist())


INSTANCES = {
    i.name: i
    for i in (
        Instance("berlin52", "52 locations in Berlin (TSPLIB, Groetschel)", BERLIN52, 7542),
        Instance("eil51", "51 cities (TSPLIB, Christofides & Eilon)", EIL51, 426),
        Instance("random30", "30 cities drawn uniformly in the unit square (seed 30)", _random_cities(30, 30)),
        Instance("random100", "100 cities drawn uniformly in the unit square (seed 100)", _random_cities(100, 100)),
    )
}


def tsplib_length(coords, tour) -> int:
    """A closed tour's length as TSPLIB's EUC_2D measures it: each edge rounded to the nearest integer."""
    c = np.asarray(coords, dtype=float)
    t = np.asarray(tour)
    edges = np.sqrt(((c[t] - c[np.roll(t, -1)]) ** 2).sum(axis=1))
    return int(np.floor(edges + 0.5).sum())
