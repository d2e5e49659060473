"""`labtrain datasets fetch NAME`: install a built-in data set on the server, into the data
directory the settings name (LABTRAIN_DATA_DIR), from its published location, a mirror
(LABTRAIN_DATASETS_MIRROR) or a local file (`--from`). The work is service/data/fetch.py's,
imported when the command runs so that `labtrain` itself starts fast."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

# The exit status says which way a fetch failed, for scripts that install data sets.
EXIT = {"unknown_dataset": 2, "offline": 3, "checksum_mismatch": 4, "busy": 5}


@click.command("fetch")
@click.argument("name", required=False)
@click.option(
    "--from",
    "source",
    type=click.Path(exists=True, path_type=Path),
    help="install from this file (or a folder holding the files) instead of downloading it",
)
@click.option("--force", is_flag=True, help="fetch again even when the full set is installed")
@click.option("--list", "as_list", is_flag=True, help="list the data sets this command installs, and their state")
def fetch(name: str | None, source: Path | None, force: bool, as_list: bool) -> None:
    """Install a built-in data set (mnist, fashion_mnist, cifar10) on the server, checked against
    its published checksums. Run it where the server runs, as the user it runs as.

    \b
      labtrain datasets fetch cifar10
      labtrain datasets fetch mnist --from mnist.npz      # no internet here
    """
    from service.core.config import Settings
    from service.data import fetch as fetching
    from service.data.known import KNOWN

    settings = Settings.from_env()
    if as_list or name is None:
        if name is None and not as_list:
            click.echo("name a data set to fetch; these are known:\n", err=True)
        _list(KNOWN, fetching, settings.data_dir)
        if name is None and not as_list:
            sys.exit(2)
        return
    settings.ensure_dirs()
    try:
        held = fetching.claim(name, settings.data_dir)
        try:
            dataset = KNOWN[name]
            before = fetching.state(dataset, settings.data_dir)
            if before.installed and not before.subset and not force:
                click.echo(f"{name} is installed ({before.path}); --force fetches it again", err=True)
                return
            tracker = fetching.Tracker(dataset, settings.data_dir)  # for the API's listing to show
            line = ProgressLine()
            try:
                after = fetching.fetch(
                    name,
                    settings.data_dir,
                    mirror=settings.datasets_mirror,
                    source=source,
                    force=True,
                    progress=lambda *args: (line(*args), tracker(*args)),
                    claimed=True,
                )
            except fetching.FetchError as exc:
                line.end()
                tracker.finish(exc)
                raise
            line.end()
            tracker.finish(None)
        finally:
            held.release()
    except fetching.FetchError as exc:
        click.echo(f"error: {exc.message}", err=True)
        sys.exit(EXIT.get(exc.code, 1))
    click.echo(f"{name} is installed: {after.path} ({after.size:,} bytes)", err=True)


def _list(known: dict, fetching, data_dir: Path) -> None:
    rows = [["name", "installed", "bytes", "what"]]
    for dataset in known.values():
        state = fetching.state(dataset, data_dir)
        installed = "subset" if state.subset else "yes" if state.installed else "no"
        rows.append([dataset.name, installed, f"{state.size or dataset.download_size:,}", dataset.title])
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())


class ProgressLine:
    """A download's progress on stderr: one line redrawn on a terminal, a line per tenth elsewhere."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self.last, self.step, self.shown = 0.0, -1, False

    def __call__(self, done: int, total: int | None, file: str) -> None:
        share = f"{done / total:4.0%}" if total else ""
        text = f"{file}  {done / 1e6:7.1f}{f' / {total / 1e6:.1f}' if total else ''} MB {share}"
        if self.tty and (time.monotonic() - self.last >= 0.2 or done == total):
            self.last, self.shown = time.monotonic(), True
            click.echo(f"\r{text}", nl=False, err=True)
        elif not self.tty and total and done * 10 // total != self.step:
            self.step = done * 10 // total
            click.echo(text, err=True)

    def end(self) -> None:
        if self.shown:
            click.echo(err=True)
            self.shown = False
