"""labtrain's workers: the Celery app, the task that runs one job, trainers and data loaders."""
