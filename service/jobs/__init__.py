"""Jobs as the database holds them: their lifecycle (status changes, events), the job-family
registry, what every family's spec shares, per-user limits, and the one path by which a
job is submitted (the API and the search driver both use it)."""
