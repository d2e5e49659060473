"""Alembic migrations for labtrain's database (`labtrain db upgrade`)."""
