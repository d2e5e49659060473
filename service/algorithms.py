"""The classic algorithms' hyperparameter schemas.

One pydantic model per algorithm validates a job's `params` before the job is stored,
and the same model generates the catalog (`GET /api/v1/algorithms`). Estimators are
built from these names in workers/trainers/classic.py.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

CLASSIFICATION = "classification"
REGRESSION = "regression"
CLUSTERING = "clustering"
DECOMPOSITION = "decomposition"
TASKS = (CLASSIFICATION, REGRESSION, CLUSTERING, DECOMPOSITION)
SUPERVISED = (CLASSIFICATION, REGRESSION)


class Params(BaseModel):
    # strict: "5" is not an int and true is not a number; unknown names are errors.
    model_config = ConfigDict(extra="forbid", strict=True)


PositiveInt = Annotated[int, Field(ge=1)]
ClassWeight = Literal["balanced"] | None

CLASSIFICATION_CRITERIA = ("gini", "entropy", "log_loss")
REGRESSION_CRITERIA = ("squared_error", "friedman_mse", "absolute_error", "poisson")


class KnnParams(Params):
    n_neighbors: int = Field(5, ge=1, le=10_000, description="Number of neighbours that vote")
    weights: Literal["uniform", "distance"] = Field("uniform", description="Equal votes or votes weighted by 1/distance")
    metric: Literal["minkowski", "euclidean", "manhattan", "chebyshev"] = "minkowski"
    p: int = Field(2, ge=1, le=10, description="Power of the Minkowski metric (1 = Manhattan, 2 = Euclidean)")
    algorithm: Literal["auto", "ball_tree", "kd_tree", "brute"] = "auto"
    leaf_size: int = Field(30, ge=1, le=10_000)


class KMeansParams(Params):
    n_clusters: int = Field(8, ge=1, le=10_000, description="Number of clusters")
    init: Literal["k-means++", "random"] = "k-means++"
    n_init: Literal["auto"] | Annotated[int, Field(ge=1, le=1000)] = Field("auto", description="Restarts with new centroids")
    max_iter: int = Field(300, ge=1, le=100_000)
    tol: float = Field(1e-4, ge=0)
    algorithm: Literal["lloyd", "elkan"] = "lloyd"


class TreeParams(Params):
    criterion: Literal["gini", "entropy", "log_loss", "squared_error", "friedman_mse", "absolute_error", "poisson"] | None = Field(
        None,
        description="Split quality: gini, entropy or log_loss (classification); squared_error, "
        "friedman_mse, absolute_error or poisson (regression). Default: gini / squared_error",
    )
    max_depth: Annotated[int, Field(ge=1, le=1000)] | None = Field(None, description="Deepest level; null grows until pure")
    min_samples_split: int = Field(2, ge=2, le=100_000)
    min_samples_leaf: int = Field(1, ge=1, le=100_000)
    max_features: Literal["sqrt", "log2"] | Annotated[float, Field(gt=0, le=1)] | Annotated[int, Field(ge=1)] | None = Field(
        None, description="Features considered per split: sqrt, log2, a fraction in (0, 1] or a count"
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
    gamma: Literal["scale", "auto"] | Annotated[float, Field(gt=0)] = Field("scale", description="Kernel coefficient (rbf, poly)")
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


@dataclass(frozen=True)
class Algorithm:
    name: str
    title: str
    tasks: tuple[str, ...]
    params: type[Params]
    probabilities: bool  # whether predict returns class probabilities


ALGORITHMS: dict[str, Algorithm] = {
    a.name: a
    for a in (
        Algorithm("knn", "k-nearest neighbours", (CLASSIFICATION, REGRESSION), KnnParams, True),
        Algorithm("kmeans", "K-Means clustering", (CLUSTERING,), KMeansParams, False),
        Algorithm("decision_tree", "CART decision tree", (CLASSIFICATION, REGRESSION), DecisionTreeParams, True),
        Algorithm("random_forest", "Random forest", (CLASSIFICATION, REGRESSION), RandomForestParams, True),
        Algorithm("svm", "Support vector machine (SVC / SVR)", (CLASSIFICATION, REGRESSION), SvmParams, False),
        Algorithm("pca", "Principal component analysis", (DECOMPOSITION,), PcaParams, False),
        Algorithm("linear_regression", "Ordinary least squares", (REGRESSION,), LinearRegressionParams, False),
        Algorithm("logistic_regression", "Logistic regression", (CLASSIFICATION,), LogisticRegressionParams, True),
    )
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
    if algorithm == "pca" and params["svd_solver"] in ("arpack", "randomized") \
            and not isinstance(params["n_components"], int):
        return "params.n_components", f"svd_solver {params['svd_solver']!r} needs a whole number of components"
    return None


def describe_params(model: type[BaseModel]) -> list[dict[str, Any]]:
    """Each parameter's type, default, bounds and choices, read from the model's JSON schema."""
    schema = model.model_json_schema()
    described = []
    for name, prop in schema.get("properties", {}).items():
        entry: dict[str, Any] = {"name": name, "default": prop.get("default")}
        if "description" in prop:
            entry["description"] = prop["description"]
        entry["accepts"] = [_describe_alternative(alt) for alt in prop.get("anyOf", [prop])]
        described.append(entry)
    return described


def _describe_alternative(alt: dict[str, Any]) -> dict[str, Any]:
    if "enum" in alt or "const" in alt:
        return {"type": "choice", "choices": alt.get("enum", [alt.get("const")])}
    kept = {"type": alt.get("type", "any")}
    for key in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        if key in alt:
            kept[key] = alt[key]
    return kept


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
