"""labtrain's job service: configuration, database, job specs, storage, API and CLI."""
