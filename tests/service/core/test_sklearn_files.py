"""Which types a skops model file may hold: every model labtrain makes and the pipelines students
save load; a file that names a function, or a class outside the allowlist, is refused before
anything in it is built. The two attacks are shown to work when the file's own list of types
is trusted (what skops's get_untrusted_types reports, all of it under numpy.)."""

from __future__ import annotations

import importlib
import inspect
import io
import json
import os
import pickle
import types
import zipfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import skops.io
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import (
    AdaBoostClassifier,
    BaggingClassifier,
    ExtraTreesClassifier,
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    StackingClassifier,
    VotingClassifier,
)
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import Lasso, LinearRegression, LogisticRegression, Ridge, SGDClassifier, SGDRegressor
from sklearn.naive_bayes import GaussianNB, MultinomialNB
from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import FunctionTransformer, MinMaxScaler, OneHotEncoder, PolynomialFeatures, StandardScaler
from sklearn.svm import SVC, SVR, LinearSVC
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor
from skops.io._protocol import PROTOCOL

from service.classic.algorithms import ALGORITHMS
from service.core.sklearn_files import HELPER_TYPES, ModelTypesRefused, allowed_types, loads_sklearn
from service.data.tables import Table
from service.data.tasks import CLASSIFICATION, REGRESSION
from workers.trainers.classic import build_estimator, build_pipeline

pytestmark = pytest.mark.fast

RNG = np.random.RandomState(0)
X = pd.DataFrame(RNG.normal(size=(90, 3)), columns=["a", "b", "c"])
MIXED = X.assign(colour=RNG.choice(["red", "green", "blue"], size=90))
MIXED.loc[::7, "a"] = np.nan
Y_CLASS = (X["a"] > 0).astype(int) + (X["b"] > 1).astype(int)
Y_VALUE = 2 * X["a"] + X["b"]


def roundtrip(model):
    return loads_sklearn(skops.io.dumps(model))


@pytest.mark.parametrize(("algorithm", "task"), [(a.name, task) for a in ALGORITHMS.values() for task in a.tasks])
def test_every_classic_algorithm_loads_in_its_pipeline(algorithm, task):
    defaults = {name: field.default for name, field in ALGORITHMS[algorithm].params.model_fields.items()}
    table = Table(X=MIXED, y=Y_CLASS, target="y", numeric=["a", "b", "c"], categorical=["colour"])
    pipeline = build_pipeline(table, "mean", True, build_estimator(algorithm, task, defaults, 0))
    target = {CLASSIFICATION: Y_CLASS, REGRESSION: Y_VALUE}.get(task)
    pipeline.fit(MIXED, target) if target is not None else pipeline.fit(MIXED)
    loaded = roundtrip(pipeline)
    method = "predict" if hasattr(pipeline, "predict") else "transform"
    assert np.allclose(getattr(loaded, method)(MIXED), getattr(pipeline, method)(MIXED))


def prepared(model) -> Pipeline:
    prepare = ColumnTransformer(
        [
            ("numbers", make_pipeline(SimpleImputer(), StandardScaler()), ["a", "b", "c"]),
            ("words", make_pipeline(SimpleImputer(strategy="most_frequent"), OneHotEncoder()), ["colour"]),
        ]
    )
    return Pipeline([("prepare", prepare), ("model", model)])


CLASSIFIERS = [
    LogisticRegression(max_iter=500),
    KNeighborsClassifier(algorithm="kd_tree", metric="manhattan"),
    KNeighborsClassifier(algorithm="ball_tree", p=3),
    DecisionTreeClassifier(random_state=0),
    RandomForestClassifier(n_estimators=4, random_state=np.random.RandomState(1)),
    ExtraTreesClassifier(n_estimators=4, random_state=0),
    GradientBoostingClassifier(n_estimators=4, random_state=0),
    AdaBoostClassifier(n_estimators=4, random_state=0),
    BaggingClassifier(n_estimators=3, random_state=0),
    SVC(),
    LinearSVC(),
    SGDClassifier(loss="modified_huber", random_state=0),
    GaussianNB(),
    MLPClassifier(hidden_layer_sizes=(8,), max_iter=30, random_state=0),
    VotingClassifier([("lr", LogisticRegression()), ("tree", DecisionTreeClassifier())], voting="soft"),
    StackingClassifier([("lr", LogisticRegression()), ("knn", KNeighborsClassifier())]),
]
REGRESSORS = [
    LinearRegression(),
    Ridge(),
    Lasso(),
    KNeighborsRegressor(),
    DecisionTreeRegressor(),
    GradientBoostingRegressor(n_estimators=4, loss="huber"),
    HistGradientBoostingRegressor(max_iter=4, loss="quantile", quantile=0.3),
    SVR(),
    SGDRegressor(loss="epsilon_insensitive"),
    MLPRegressor(hidden_layer_sizes=(8,), max_iter=30),
]


@pytest.mark.parametrize("model", CLASSIFIERS + REGRESSORS, ids=lambda m: type(m).__name__)
def test_students_pipelines_load(model):
    target = Y_CLASS if model in CLASSIFIERS else Y_VALUE
    pipeline = prepared(model).fit(MIXED, target)
    assert np.allclose(roundtrip(pipeline).predict(MIXED), pipeline.predict(MIXED))


def test_other_typical_pipelines_load():
    numbers = make_pipeline(PolynomialFeatures(2), MinMaxScaler(), Ridge()).fit(X.astype(np.float32), Y_VALUE)
    assert np.allclose(roundtrip(numbers).predict(X), numbers.predict(X))
    texts, labels = ["red apple", "green pear", "blue sky", "red sky"] * 5, ["fruit", "fruit", "sky", "sky"] * 5
    words = make_pipeline(TfidfVectorizer(), MultinomialNB()).fit(texts, labels)
    assert list(roundtrip(words).predict(["red pear"])) == list(words.predict(["red pear"]))


def test_the_allowlist_is_classes_found_where_skops_looks_for_them():
    allowed = allowed_types()
    assert len(allowed) > 250 and len(HELPER_TYPES) < 80
    for module, name in allowed:
        found = getattr(importlib.import_module(module), name)
        assert inspect.isclass(found) and not isinstance(found, types.BuiltinFunctionType), (module, name)
    assert ("numpy", "savetxt") not in allowed and ("numpy", "load") not in allowed


def test_a_function_is_refused_even_one_skops_trusts_by_default():
    model = make_pipeline(FunctionTransformer(func=np.log1p), LinearRegression()).fit(X.abs(), Y_VALUE)
    data = skops.io.dumps(model)
    assert "numpy.log1p" not in skops.io.get_untrusted_types(data=data)  # a ufunc: trusted by skops itself
    with pytest.raises(ModelTypesRefused) as refused:
        loads_sklearn(data)
    assert refused.value.refused == ["numpy.log1p (a function)"]


class Doubler(BaseEstimator, TransformerMixin):
    def fit(self, x, y=None):
        return self

    def transform(self, x):
        return x * 2


def test_a_students_own_class_is_refused():
    with pytest.raises(ModelTypesRefused, match=r"tests\.service\.core\.test_sklearn_files\.Doubler"):
        roundtrip(make_pipeline(Doubler(), LinearRegression()).fit(X, Y_VALUE))


# --- hand-written files --------------------------------------------------------------------


def value(content) -> dict:
    return {"__class__": "str", "__module__": "builtins", "__loader__": "JsonNode", "content": json.dumps(content)}


def call(module: str, name: str, *args) -> dict:
    """A node skops builds by calling module.name(*args)."""
    arguments = {"__class__": "tuple", "__module__": "builtins", "__loader__": "TupleNode", "content": list(args)}
    return {"__class__": name, "__module__": module, "__loader__": "ConstructorFromReduceNode", "content": arguments}


def skops_file(root: dict) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("schema.json", json.dumps({**root, "protocol": PROTOCOL, "_skops_version": "0.16.0"}))
    return buffer.getvalue()


@contextmanager
def working_directory(path: Path):
    before = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)


def trusting_its_own_list(data: bytes):
    """The rule this module replaced: whatever the file names, if it is under numpy. or sklearn."""
    named = skops.io.get_untrusted_types(data=data)
    assert all(name.startswith(("numpy.", "sklearn.")) for name in named), named
    return skops.io.loads(data, trusted=named)


def test_a_file_calling_numpy_savetxt_is_refused_and_writes_nothing(tmp_path):
    data = skops_file(call("numpy", "savetxt", value("written.txt"), value([[1, 2]])))
    with working_directory(tmp_path):
        trusting_its_own_list(data)  # the control: the old rule let it write a file
        assert (tmp_path / "written.txt").exists()
        (tmp_path / "written.txt").unlink()

        with pytest.raises(ModelTypesRefused) as refused:
            loads_sklearn(data)
    assert refused.value.refused == ["numpy.savetxt"] and "numpy.savetxt" in str(refused.value)
    assert list(tmp_path.iterdir()) == []


class Touch:
    """Unpickled, it creates a file: any code could run in its place."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return open, (self.path, "w")


def test_a_file_calling_numpy_load_on_a_pickle_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "code-ran"
    (tmp_path / "payload.pkl").write_bytes(pickle.dumps(Touch(str(marker))))
    data = skops_file(call("numpy", "load", value(str(tmp_path / "payload.pkl")), value(None), value(True)))
    with working_directory(tmp_path):
        trusting_its_own_list(data).close()  # the control: the old rule unpickled it
        assert marker.exists()
        marker.unlink()

        with pytest.raises(ModelTypesRefused, match="numpy.load"):
            loads_sklearn(data)
    assert not marker.exists()


def test_a_generator_naming_another_numpy_random_attribute_is_refused():
    model = HistGradientBoostingRegressor(max_iter=2).fit(X, Y_VALUE)
    with zipfile.ZipFile(io.BytesIO(skops.io.dumps(model))) as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    files["schema.json"] = files["schema.json"].replace(b'\\"PCG64\\"', b'\\"seed\\"')
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in files.items():
            archive.writestr(name, content)
    with pytest.raises(ModelTypesRefused, match=r"numpy\.random\.seed \(a bit generator\)"):
        loads_sklearn(buffer.getvalue())


def test_a_file_of_another_protocol_is_refused():
    root = call("sklearn.linear_model._base", "LinearRegression")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("schema.json", json.dumps({**root, "protocol": PROTOCOL - 1}))
    with pytest.raises(ValueError, match="not written by this version of skops"):
        loads_sklearn(buffer.getvalue())
