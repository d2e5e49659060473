"""MLflow's tracking REST protocol, served by labtrain without Flask (workers import it): who asks
(principal), jobs seen as runs (runs), experiments, runs, params, tags and metrics (store), searches
with MLflow's own filter grammar (search), the endpoint table (protocol); the API's routes are
service/api/mlflow.py."""
