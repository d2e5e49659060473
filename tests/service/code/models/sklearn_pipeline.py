"""A scikit-learn pipeline on iris, saved with save_model (skops); with --own it holds a
transformer class of the script's own, which the API must refuse to serve."""

import sys

from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import labtrain_job


class Doubler(BaseEstimator, TransformerMixin):
    def fit(self, x, y=None):
        return self

    def transform(self, x):
        return x * 2


x, y = load_iris(return_X_y=True, as_frame=True)
steps = [Doubler()] if "--own" in sys.argv else []
model = make_pipeline(*steps, StandardScaler(), LogisticRegression(max_iter=500)).fit(x, y)
labtrain_job.report(accuracy=model.score(x, y))
labtrain_job.save_model(model, x[:5], classes=["setosa", "versicolor", "virginica"])
