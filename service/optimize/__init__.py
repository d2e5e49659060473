"""The optimisation family (`optimize`): a metaheuristic on a benchmark function, or Ant
Colony System on a travelling-salesman instance. Its record is in `family`; the worker
side is workers/trainers/optimize."""
