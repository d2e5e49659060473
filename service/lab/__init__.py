"""Running the lab: users and their tokens, request rate limits, the worker registry, fair
share and device usage, retention of old jobs' files, and the Prometheus figures."""
