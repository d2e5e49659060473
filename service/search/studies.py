"""Where a search's Optuna study lives: an append-only journal file in the search's job folder.

Optuna's database storage costs a dozen statements, each committed, per ask and per tell, all
in the dispatcher's one thread; the journal costs an append. It sits beside the search's
state (service/search/state.py) and moves with its folder, and a driver keeps a search's
journal open while it runs, so the file is read once and then only what was appended. A
search begun while the study lived in the database is copied into a journal once.
"""

from __future__ import annotations

import os
from pathlib import Path

import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

JOURNAL_FILE = "optuna-journal.log"


def open_journal(folder: Path, study_name: str, database_url: str, begun: bool) -> JournalStorage:
    """The study's journal; `begun` says the search asked trials before (maybe in the database)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / JOURNAL_FILE
    if not path.exists() and begun:
        _copy_from_database(path, study_name, database_url)
    return _journal(path)


def _journal(path: Path) -> JournalStorage:
    # The open-file lock (not the default symlink) also holds on NFS, where a shared artifact
    # volume may live.
    return JournalStorage(JournalFileBackend(str(path), lock_obj=JournalFileOpenLock(str(path))))


def _copy_from_database(path: Path, study_name: str, database_url: str) -> None:
    """A study kept in the database by an earlier version, written whole into a journal first
    and then renamed, so a crash never leaves half a copy."""
    database = optuna.storages.RDBStorage(database_url)
    try:
        database.get_study_id_from_name(study_name)
    except KeyError:
        return  # asked nothing there: the journal starts empty
    else:
        partial = path.with_suffix(".partial")
        partial.unlink(missing_ok=True)
        optuna.copy_study(from_study_name=study_name, from_storage=database, to_storage=_journal(partial))
        os.replace(partial, path)
    finally:
        database.engine.dispose()
