"""A code job's disk: a filesystem of its own, so the kernel holds it to its size and its
number of files. A file deleted but kept open still takes its blocks there, and a flood of
empty files runs out of inodes, where a walk of the folder would see neither.

The filesystem is a sparse ext4 image (LABTRAIN_MAX_JOB_DISK_MB, LABTRAIN_CODE_MAX_FILES
inodes, no journal, nothing reserved) in the job's checkpoints folder, which the runner keeps
across attempts and removes when the job ends: the image, and the checkpoints in it, go the
same way. The root worker loop-mounts it (nosuid, nodev) under /run/labtrain/disks, outside
the artifact store, and the sandbox sees it at /job: src/, outputs/, home/ and checkpoints/
all count against the one limit. While it is mounted, the worker process holds a lock file
beside the mount point; `sweep` unmounts what a dead worker left (its lock is free).

Where the machine cannot (not root, no loop device, no mkfs.ext4), the job's folder is a
plain folder, measured by walking it (`FolderDisk`): a file deleted but kept open escapes
that walk, which `describe` says in the worker's capabilities.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import stat
import subprocess
from pathlib import Path

from service.core import storage

MOUNT_ROOT = Path("/run/labtrain/disks")
IMAGE_NAME = "job-disk.img"
FOLDERS = ("src", "outputs", "home", "checkpoints")  # what the job needs, owned by the sandbox's uid
# Less free space than this counts as full: a write that failed for lack of space leaves a
# little behind (less than the block or the write that did not fit).
FULL_MARGIN_BYTES = 1024 * 1024
COMMAND_TIMEOUT_S = 60


class DiskError(RuntimeError):
    """The job's filesystem could not be made or mounted."""


def unavailable() -> str | None:
    """Why this machine cannot give a job a filesystem of its own (None: it can)."""
    if os.geteuid() != 0:
        return "the worker is not root (a loop mount needs root)"
    if not Path("/dev/loop-control").exists():
        return "no loop device (/dev/loop-control)"
    missing = [tool for tool in ("mkfs.ext4", "mount", "umount") if shutil.which(tool) is None]
    return f"{', '.join(missing)} not installed" if missing else None


def describe(size_mb: int, files: int) -> str:
    """How this worker holds a job to its disk limits (for its capabilities)."""
    why_not = unavailable()
    if why_not is None:
        return f"an ext4 filesystem per job ({size_mb} MB, {files} files), loop-mounted"
    return (
        f"walked every second ({why_not}): a file deleted but kept open is not counted, "
        f"and a job may briefly hold more than {size_mb} MB"
    )


class ImageDisk:
    """The job's filesystem, mounted at `root` until `close`."""

    held_by_kernel = True  # `full` is a statfs: cheap enough to ask often

    def __init__(self, root: Path, lock_fd: int):
        self.root, self._lock_fd = root, lock_fd
        self.checkpoints = root / "checkpoints"

    @property
    def job_folders(self) -> list[Path]:
        """What the sandbox's uid owns (the filesystem's root stays root's)."""
        return [self.root / folder for folder in FOLDERS]

    @classmethod
    def mount(cls, name: str, image: Path, size_bytes: int, files: int) -> ImageDisk:
        """Mount the job's image (made on its first attempt) at MOUNT_ROOT/<name>; `name` is
        unique to the attempt."""
        MOUNT_ROOT.mkdir(parents=True, exist_ok=True)
        lock_fd = _lock(MOUNT_ROOT / f"{name}.lock")
        root = MOUNT_ROOT / name
        disk = cls(root, lock_fd)
        try:
            root.mkdir(mode=0o755, exist_ok=True)
            if not (image.exists() and _mounts(image, root)):  # kept from an earlier attempt
                _make(image, size_bytes, files)  # a first attempt, or an image a crash left unusable
                _mount(image, root)
            for folder in disk.job_folders:
                folder.mkdir(exist_ok=True)
        except BaseException:
            disk.close()
            raise
        return disk

    def full(self) -> str | None:
        """Which limit the job reached: "files" (no inode left), "bytes" (almost no space), or None."""
        found = os.statvfs(self.root)
        if found.f_favail == 0:
            return "files"
        if found.f_bavail * found.f_frsize < FULL_MARGIN_BYTES:
            return "bytes"
        return None

    def clear(self) -> None:
        """What an attempt leaves: the checkpoints alone."""
        for folder in ("src", "outputs", "home"):
            shutil.rmtree(self.root / folder, ignore_errors=True)  # fd-based: follows no link

    def close(self) -> None:
        """Unmounted (which detaches its loop device) and its mount point gone."""
        _unmount(self.root)
        with contextlib.suppress(OSError):
            self.root.rmdir()
        _unlock(self._lock_fd, MOUNT_ROOT / f"{self.root.name}.lock")


class FolderDisk:
    """The job's folder on the worker's own filesystem, measured by walking it."""

    held_by_kernel = False  # `full` walks every file: asked once a second at most

    def __init__(self, root: Path, checkpoints: Path, size_bytes: int, files: int):
        self.root, self.checkpoints = root, checkpoints
        self.size_bytes, self.files = size_bytes, files

    @property
    def job_folders(self) -> list[Path]:
        return [self.root, self.checkpoints]

    def clear(self) -> None:
        """What an attempt leaves: the checkpoints, which are beside its folder."""
        shutil.rmtree(self.root, ignore_errors=True)

    def full(self) -> str | None:
        used, count = 0, 0
        for folder in (self.root, self.checkpoints):
            for _relative, info, _dir_fd, _name in storage.entries(folder):
                count += 1
                if count > self.files:
                    return "files"
                if stat.S_ISREG(info.st_mode):
                    used += info.st_blocks * 512  # what it takes on disk (a sparse file's holes take nothing)
        return "bytes" if used > self.size_bytes else None

    def close(self) -> None:
        pass


def sweep() -> None:
    """Unmount the filesystems dead workers left: a lock file no one holds. A live worker's
    (this machine may run several) holds its lock while its job's filesystem is mounted."""
    if not MOUNT_ROOT.is_dir():
        return
    for lock in MOUNT_ROOT.glob("*.lock"):
        try:
            lock_fd = _lock(lock)
        except (OSError, DiskError):  # held: a running job's
            continue
        root = MOUNT_ROOT / lock.name.removesuffix(".lock")
        _unmount(root)
        with contextlib.suppress(OSError):
            root.rmdir()
        _unlock(lock_fd, lock)


def _make(image: Path, size_bytes: int, files: int) -> None:
    image.parent.mkdir(parents=True, exist_ok=True)
    image.unlink(missing_ok=True)
    with open(image, "xb") as handle:  # sparse: it takes only what the job writes
        os.fchmod(handle.fileno(), 0o600)
        handle.truncate(size_bytes)
    options = ["-F", "-q", "-N", str(files), "-m", "0", "-O", "^has_journal", "-E", "root_owner=0:0,nodiscard"]
    _run(["mkfs.ext4", *options, str(image)])


def _mounts(image: Path, root: Path) -> bool:
    """Mount a kept image; False when it will not mount (a crash may leave it unusable)."""
    try:
        _mount(image, root)
    except DiskError:
        return False
    return True


def _mount(image: Path, root: Path) -> None:
    # discard: blocks the job frees are given back to the worker's disk.
    _run(["mount", "-t", "ext4", "-o", "loop,nosuid,nodev,noatime,discard", str(image), str(root)])


def _unmount(root: Path) -> None:
    if not os.path.ismount(root):
        return
    try:
        _run(["umount", str(root)])
    except DiskError:  # still busy (a process of an unsandboxed job): detached, freed when it ends
        with contextlib.suppress(DiskError):
            _run(["umount", "--lazy", str(root)])


def _lock(path: Path) -> int:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        raise DiskError(f"{path} is held by another worker") from exc
    return fd


def _unlock(fd: int, path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()
    os.close(fd)


def _run(argv: list[str]) -> None:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S)
    except (OSError, subprocess.SubprocessError) as exc:
        raise DiskError(f"{argv[0]}: {exc}") from exc
    if done.returncode != 0:
        raise DiskError(f"{argv[0]} failed: {(done.stderr or done.stdout).strip()[:300]}")
