"""scikit-learn's classic algorithms: each one's hyperparameter schema, tasks and estimators.

One pydantic model per algorithm validates a job's `params` before the job is stored, and
the same model generates the catalog (`GET /api/v1/algorithms`) and bounds a search over
it. Each algorithm names its scikit-learn estimator per task; the worker's classic trainer
builds exactly that class, so adding an algorithm is one entry here.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import Field

from service.core.schema import Strict, describe_params
from service.data.tasks import CLASSIFICATION, CLUSTERING, DECOMPOSITION, REGRESSION


class Params(Strict):
    pass


PositiveInt = Annotated[int, Field(ge=1)]
ClassWeight = Literal["balanced"] | None

CLASSIFICATION_CRITERIA = ("gini", "entropy", "log_loss")
REGRESSION_CRITERIA = ("squared_error", "friedman_mse", "absolute_error", "poisson")


class KnnParams(Params):
    n_neighbors: int = Field(5, ge=1, le=10_000, description="Number of neighbours that vote")
    weights: Literal["uniform", "distance"] = Field(
        "uniform", description="Equal votes or votes weighted by 1/distance"
    )
    metric: Literal["minkowski", "euclidean", "manhattan", "chebyshev"] = "minkowski"
    p: int = Field(2, ge=1, le=10, description="Power of the Minkowski metric (1 = Manhattan, 2 = Euclidean)")
    algorithm: Literal["auto", "ball_tree", "kd_tree", "brute"] = "auto"
    leaf_size: int = Field(30, ge=1, le=10_000)


class KMeansParams(Params):
    n_clusters: int = Field(8, ge=1, le=10_000, description="Number of clusters")
    init: Literal["k-means++", "random"] = "k-means++"
    n_init: Literal["auto"] | Annotated[int, Field(ge=1, le=1000)] = Field(
        "auto", description="Restarts with new centroids"
    )
    max_iter: int = Field(300, ge=1, le=100_000)
    tol: float = Field(1e-4, ge=0)
    algorithm: Literal["lloyd", "elkan"] = "lloyd"


class TreeParams(Params):
    criterion: (
        Literal["gini", "entropy", "log_loss", "squared_error", "friedman_mse", "absolute_error", "poisson"] | None
    ) = Field(
        None,
        description="Split quality: gini, entropy or log_loss (classification); squared_error, "
        "friedman_mse, absolute_error or poisson (regression). Default: gini / squared_error",
    )
    max_depth: Annotated[int, Field(ge=1, le=1000)] | None = Field(
        None, description="Deepest level; null grows until pure"
    )
    min_samples_split: int = Field(2, ge=2, le=100_000)
    min_samples_leaf: int = Field(1, ge=1, le=100_000)
    max_features: Literal["sqrt", "log2"] | Annotated[float, Field(gt=0, le=1)] | Annotated[int, Field(ge=1)] | None = (
        Field(None, description="Features considered per split: sqrt, log2, a fraction in (0, 1] or a count")
    )
    ccp_alpha: float = Field(0.0, ge=0, description="Cost-complexity pruning strength")
    class_weight: ClassWeight = Field(None, description="classification only")


class DecisionTreeParams(TreeParams):
    splitter: Literal["best", "random"] = "best"


class RandomForestParams(TreeParams):
    n_estimators: int = Field(100, ge=1, le=5000, description="Number of trees")
    bootstrap: bool = True
    max_samples: Annotated[float, Field(gt=0, le=1)] | None = Field(None, description="Fraction of rows drawn per tree")


class SvmParams(Params):
    kernel: Literal["linear", "rbf", "poly"] = "rbf"
    C: float = Field(1.0, gt=0, le=1e6, description="Inverse regularisation strength")
    gamma: Literal["scale", "auto"] | Annotated[float, Field(gt=0)] = Field(
        "scale", description="Kernel coefficient (rbf, poly)"
    )
    degree: int = Field(3, ge=1, le=10, description="Degree of the poly kernel")
    coef0: float = Field(0.0, description="Independent term of the poly kernel")
    epsilon: float = Field(0.1, ge=0, description="Width of the no-penalty tube (regression only)")
    tol: float = Field(1e-3, gt=0)
    max_iter: int = Field(-1, ge=-1, description="-1 for no limit")
    class_weight: ClassWeight = Field(None, description="classification only")


class PcaParams(Params):
    n_components: Annotated[int, Field(ge=1)] | Annotated[float, Field(gt=0, lt=1)] | None = Field(
        None, description="Components kept: a count, a fraction of variance to keep, or null for all"
    )
    whiten: bool = False
    svd_solver: Literal["auto", "full", "covariance_eigh", "arpack", "randomized"] = "auto"


class LinearRegressionParams(Params):
    fit_intercept: bool = True
    positive: bool = Field(False, description="Force coefficients to be positive")


class LogisticRegressionParams(Params):
    C: float = Field(1.0, gt=0, le=1e6, description="Inverse regularisation strength")
    l1_ratio: float = Field(0.0, ge=0, le=1, description="0 = L2, 1 = L1 penalty (L1 needs saga or liblinear)")
    solver: Literal["lbfgs", "liblinear", "newton-cg", "newton-cholesky", "sag", "saga"] = "lbfgs"
    max_iter: int = Field(100, ge=1, le=100_000)
    tol: float = Field(1e-4, gt=0)
    fit_intercept: bool = True
    class_weight: ClassWeight = None


class GradientBoostingParams(Params):
    loss: Literal["log_loss", "squared_error", "absolute_error", "gamma", "poisson", "quantile"] | None = Field(
        None,
        description="log_loss (classification); squared_error, absolute_error, gamma, poisson or quantile "
        "(regression). Default: log_loss / squared_error",
    )
    quantile: float | None = Field(None, gt=0, lt=1, description="The quantile to predict with loss quantile")
    learning_rate: float = Field(0.1, gt=0, le=10, description="Shrinkage of each tree's contribution")
    max_iter: int = Field(100, ge=1, le=10_000, description="Boosting iterations (trees per class)")
    max_leaf_nodes: Annotated[int, Field(ge=2, le=100_000)] | None = Field(
        31, description="Leaves per tree; null for no limit"
    )
    max_depth: Annotated[int, Field(ge=1, le=1000)] | None = Field(None, description="Deepest level; null for no limit")
    min_samples_leaf: int = Field(20, ge=1, le=100_000)
    l2_regularization: float = Field(0.0, ge=0, le=1e6)
    max_features: float = Field(1.0, gt=0, le=1, description="Fraction of features considered per split")
    max_bins: int = Field(255, ge=2, le=255, description="Bins per feature for the histograms")
    early_stopping: Literal["auto"] | bool = Field(
        "auto", description="Stop when the validation score stalls; auto: when the training part has over 10,000 rows"
    )
    validation_fraction: float = Field(0.1, gt=0, lt=1, description="Held out of the fit for early stopping")
    n_iter_no_change: int = Field(10, ge=1, le=10_000)
    class_weight: ClassWeight = Field(None, description="classification only")


@dataclass(frozen=True)
class Algorithm:
    name: str
    title: str
    estimators: dict[str, str]  # task -> the scikit-learn estimator class, as module.Class
    params: type[Params]
    probabilities: bool  # whether predict returns class probabilities
    handles_missing: bool = False  # fits on rows with missing values without imputation

    @property
    def tasks(self) -> tuple[str, ...]:
        return tuple(self.estimators)

    def estimator_class(self, task: str) -> type:
        module, _, name = self.estimators[task].rpartition(".")
        return getattr(importlib.import_module(module), name)


ALGORITHMS: dict[str, Algorithm] = {
    a.name: a
    for a in (
        Algorithm(
            "knn",
            "k-nearest neighbours",
            {
                CLASSIFICATION: "sklearn.neighbors.KNeighborsClassifier",
                REGRESSION: "sklearn.neighbors.KNeighborsRegressor",
            },
            KnnParams,
            True,
        ),
        Algorithm("kmeans", "K-Means clustering", {CLUSTERING: "sklearn.cluster.KMeans"}, KMeansParams, False),
        Algorithm(
            "decision_tree",
            "CART decision tree",
            {CLASSIFICATION: "sklearn.tree.DecisionTreeClassifier", REGRESSION: "sklearn.tree.DecisionTreeRegressor"},
            DecisionTreeParams,
            True,
        ),
        Algorithm(
            "random_forest",
            "Random forest",
            {
                CLASSIFICATION: "sklearn.ensemble.RandomForestClassifier",
                REGRESSION: "sklearn.ensemble.RandomForestRegressor",
            },
            RandomForestParams,
            True,
        ),
        Algorithm(
            "svm",
            "Support vector machine (SVC / SVR)",
            {CLASSIFICATION: "sklearn.svm.SVC", REGRESSION: "sklearn.svm.SVR"},
            SvmParams,
            False,
        ),
        Algorithm(
            "pca", "Principal component analysis", {DECOMPOSITION: "sklearn.decomposition.PCA"}, PcaParams, False
        ),
        Algorithm(
            "linear_regression",
            "Ordinary least squares",
            {REGRESSION: "sklearn.linear_model.LinearRegression"},
            LinearRegressionParams,
            False,
        ),
        Algorithm(
            "logistic_regression",
            "Logistic regression",
            {CLASSIFICATION: "sklearn.linear_model.LogisticRegression"},
            LogisticRegressionParams,
            True,
        ),
        Algorithm(
            "gradient_boosting",
            "Histogram-based gradient boosting",
            {
                CLASSIFICATION: "sklearn.ensemble.HistGradientBoostingClassifier",
                REGRESSION: "sklearn.ensemble.HistGradientBoostingRegressor",
            },
            GradientBoostingParams,
            True,
            handles_missing=True,
        ),
    )
}

GRADIENT_BOOSTING_LOSSES = {
    CLASSIFICATION: ("log_loss",),
    REGRESSION: ("squared_error", "absolute_error", "gamma", "poisson", "quantile"),
}


def param_conflicts(algorithm: str, task: str, params: dict[str, Any]) -> tuple[str, str] | None:
    """A (field, message) pair for parameters that do not fit together or the task, else None.

    These are the combinations scikit-learn would refuse only when fitting.
    """
    criterion = params.get("criterion")
    if criterion is not None:
        allowed = CLASSIFICATION_CRITERIA if task == CLASSIFICATION else REGRESSION_CRITERIA
        if criterion not in allowed:
            return "params.criterion", f"criterion {criterion!r} does not fit {task}; use one of {', '.join(allowed)}"
    if task == REGRESSION and params.get("class_weight") is not None:
        return "params.class_weight", "class_weight applies to classification only; remove it"
    if algorithm == "logistic_regression":
        l1_ratio, solver = params["l1_ratio"], params["solver"]
        if 0 < l1_ratio < 1 and solver != "saga":
            return "params.solver", "an l1_ratio between 0 and 1 (elastic net) needs solver 'saga'"
        if l1_ratio == 1 and solver not in ("saga", "liblinear"):
            return "params.solver", "l1_ratio 1 (L1 penalty) needs solver 'saga' or 'liblinear'"
    if algorithm == "random_forest" and params["max_samples"] is not None and not params["bootstrap"]:
        return "params.max_samples", "max_samples applies only with bootstrap true; remove it or set bootstrap"
    if algorithm == "gradient_boosting":
        loss, allowed = params["loss"], GRADIENT_BOOSTING_LOSSES[task]
        if loss is not None and loss not in allowed:
            return "params.loss", f"loss {loss!r} does not fit {task}; use one of {', '.join(allowed)}"
        if (loss == "quantile") != (params["quantile"] is not None):
            return "params.quantile", "loss 'quantile' needs quantile (between 0 and 1), and quantile needs that loss"
    if (
        algorithm == "pca"
        and params["svd_solver"] in ("arpack", "randomized")
        and not isinstance(params["n_components"], int)
    ):
        return "params.n_components", f"svd_solver {params['svd_solver']!r} needs a whole number of components"
    return None


def catalog() -> list[dict[str, Any]]:
    return [
        {
            "name": a.name,
            "title": a.title,
            "family": "classic",
            "tasks": list(a.tasks),
            "probabilities": a.probabilities,
            "parameters": describe_params(a.params),
        }
        for a in ALGORITHMS.values()
    ]
