"""The learning tasks a data set or a job can have."""

from __future__ import annotations

CLASSIFICATION = "classification"
REGRESSION = "regression"
CLUSTERING = "clustering"
DECOMPOSITION = "decomposition"
TASKS = (CLASSIFICATION, REGRESSION, CLUSTERING, DECOMPOSITION)
SUPERVISED = (CLASSIFICATION, REGRESSION)
