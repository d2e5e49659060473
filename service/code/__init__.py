"""The code family (`code`): students' own scripts, run in a sandbox the kernel enforces.
Uploads are in `sources`, the record in `family`; the worker side is workers/trainers/code
and the sandbox service/sandbox."""
