"""What validating a job spec may consult."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from sqlalchemy.orm import Session

from service.core.config import Settings
from service.core.orm import User
from service.data.refs import DatasetRefs


@dataclass
class SubmitContext:
    """What validating a spec may consult: the database, the settings and whose job it is."""

    session: Session
    settings: Settings
    user: User

    @cached_property
    def data(self) -> DatasetRefs:
        return DatasetRefs(self.session, self.user, self.settings.data_dir)
