"""Runs compared side by side: several jobs (later also MLflow runs that are no job) as items
with their parameters, final metrics and curves, and which of those differ between them.

items (one column of a comparison), flatten (a spec's parameters and a job's metrics as dotted
names), series (a job's curves from its epoch and metrics events), gather (the items the caller
may see, by ids or a search's trials), runs (where MLflow runs that are no job come in),
comparison (the items together: what differs, the JSON view), csv_export (one row per item)."""
