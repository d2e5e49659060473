"""The `labtrain` client commands: they talk to a labtrain server over its HTTP API only."""
