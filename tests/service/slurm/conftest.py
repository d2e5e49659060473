"""The SLURM cluster these tests run jobs on is the session fixture `slurm_cluster`
(tests/support/slurm_cluster.py, a plugin of tests/conftest.py): one per session."""
