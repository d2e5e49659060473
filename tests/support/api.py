"""What many API tests share: a small job spec and the check of the API's error shape."""

from __future__ import annotations

IRIS_KNN = {
    "name": "iris-knn",
    "dataset": "iris",
    "algorithm": "knn",
    "params": {"n_neighbors": 5},
    "evaluation": {"test_size": 0.2, "cv": 5, "seed": 0},
}


def assert_error(response, status, field=None, code=None):
    """The answer is `status` in the API's error shape (a message, details), naming `field` and `code` when given."""
    assert response.status_code == status, response.get_data(as_text=True)
    body = response.get_json()
    assert set(body) == {"error"}
    error = body["error"]
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["details"], dict)
    if field is not None:
        assert error["details"].get("field") == field, error
    if code is not None:
        assert error["code"] == code, error
    return error
