"""The search family (`search` inside another family's spec): a hyperparameter search whose
trials are jobs of their own, driven by the dispatcher. Its record is in `family`."""
