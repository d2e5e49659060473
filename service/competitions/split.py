"""Which test rows are public (scored on the leaderboard while open) and which private (the final
ranking): a hash of the competition's id and the row's id, so the split never changes, needs no
storage, and cannot be guessed from the row order. Both parts always hold a row."""

from __future__ import annotations

import hashlib

import numpy as np


def public_mask(competition_id: str, ids: list[str], fraction: float) -> np.ndarray:
    """True for the public rows; at least one row on each side when there are two or more."""
    draws = np.array([_draw(competition_id, row_id) for row_id in ids])
    mask = draws < fraction
    if len(ids) >= 2 and mask.all():
        mask[int(np.argmax(draws))] = False
    if len(ids) >= 2 and not mask.any():
        mask[int(np.argmin(draws))] = True
    return mask


def _draw(competition_id: str, row_id: str) -> float:
    digest = hashlib.sha256(f"{competition_id}\x00{row_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64
