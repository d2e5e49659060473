"""Models made by jobs answer from processes of their own: unprivileged, in a sandbox like a code
job's (no network, none of the service's files, the model file alone read-only), with limits on
memory, CPU and time, kept warm per model. The API and the worker only pass bytes to them and
read answers back (DESIGN.md decision 13): a model format's loader is code too."""
