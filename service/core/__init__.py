"""The foundation every other package builds on: settings, the database and its rows,
errors, where files live, the broker, logs and migrations. It knows nothing of job
families, users' limits or the web."""
