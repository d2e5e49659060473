"""SLURM as an execution backend beside Celery (docs/slurm.md).

queues (LABTRAIN_QUEUES: which queue a partition serves, and how), commands (sbatch, squeue,
scontrol, scancel and sinfo, each with a timeout, their output parsed), script (a job's sbatch
options and batch script), backend (what the dispatcher calls: free slots, submit, reconcile).
The job on the node is `labtrain worker run-one` (service/cli/run_one.py).
"""
