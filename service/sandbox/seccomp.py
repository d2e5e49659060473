"""The system calls a sandboxed program may not make: a seccomp filter, compiled once per
process with libseccomp (through ctypes: the library every Linux distribution ships) and
handed to bubblewrap as a file (`--seccomp FD`).

What it refuses, roughly Docker's default profile plus Flatpak's additions: the kernel's
keyrings (shared by every job of one uid), new namespaces of any kind (a user namespace
would give the program capabilities over its own), mounts, tracing other processes,
loading kernel code or BPF programs, io_uring and userfaultfd (large kernel surfaces),
setting the clock, injecting terminal input, and socket families beyond Unix, IP and
netlink. Everything else is allowed. The filter is for this machine's own architecture
(x86_64 or aarch64) alone: a system call from another ABI (32-bit x86, x32, 32-bit ARM)
kills the process, so none can go around the rules.

bubblewrap reads the filter from a descriptor; box.py opens it from `program_path()`.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import fcntl
import functools
import os

# What libseccomp calls its actions and comparisons (seccomp.h).
ALLOW = 0x7FFF0000
KILL_PROCESS = 0x80000000
CMP_EQ, CMP_GT, CMP_MASKED_EQ = 4, 6, 7
ATTR_ACT_BADARCH, ATTR_CTL_OPTIMIZE = 2, 8


def errno_action(number: int) -> int:
    return 0x00050000 | number


REFUSED = (
    # keyrings
    "add_key", "keyctl", "request_key",
    # namespaces (clone's namespace flags are refused below; clone3's flags sit in memory a
    # filter cannot read, so it says "not here" and glibc falls back to clone)
    "unshare", "setns",
    # mounts
    "mount", "umount", "umount2", "pivot_root", "chroot", "open_tree", "move_mount", "fsopen",
    "fsconfig", "fsmount", "fspick", "mount_setattr", "open_tree_attr",
    # other processes' memory
    "ptrace", "process_vm_readv", "process_vm_writev", "process_madvise", "kcmp", "pidfd_getfd",
    # the kernel itself
    "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module",
    "create_module", "query_module", "get_kernel_syms", "bpf", "perf_event_open", "userfaultfd",
    "io_uring_setup", "io_uring_enter", "io_uring_register", "lookup_dcookie", "nfsservctl",
    "ioperm", "iopl", "modify_ldt", "vm86", "vm86old", "_sysctl", "sysfs", "ustat", "uselib",
    # the machine's state
    "acct", "swapon", "swapoff", "reboot", "settimeofday", "stime", "clock_settime",
    "clock_adjtime", "quotactl", "quotactl_fd", "syslog",
    # files by handle, around the mount namespace
    "name_to_handle_at", "open_by_handle_at",
)  # fmt: skip
# Newer than some libseccomp that knows no name for them; numbers from 424 on are the same on
# every architecture.
NUMBERS = {"open_tree_attr": 467}
NAMESPACE_FLAGS = (
    0x00020000,  # CLONE_NEWNS
    0x02000000,  # CLONE_NEWCGROUP
    0x04000000,  # CLONE_NEWUTS
    0x08000000,  # CLONE_NEWIPC
    0x10000000,  # CLONE_NEWUSER
    0x20000000,  # CLONE_NEWPID
    0x40000000,  # CLONE_NEWNET
)
TERMINAL_INPUT = (0x5412, 0x541C)  # ioctl TIOCSTI (type into a terminal), TIOCLINUX
SOCKET_FAMILIES = (1, 2, 10, 16)  # AF_UNIX, AF_INET, AF_INET6, AF_NETLINK
LAST_FAMILY = 45  # AF_MAX today: any number above it is refused too


class SeccompError(RuntimeError):
    """No filter could be made (libseccomp missing, or it refused a rule)."""


class _Compare(ctypes.Structure):
    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int), ("a", ctypes.c_uint64), ("b", ctypes.c_uint64)]


def program_path() -> str:
    """Where the filter can be opened, read-only, from its start: a sealed file in this process's
    memory (nothing on disk to clean up or to tamper with), built on first use."""
    return f"/proc/{os.getpid()}/fd/{_sealed_file()}"


@functools.cache
def _sealed_file() -> int:
    fd = os.memfd_create("labtrain-seccomp", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    os.write(fd, program())
    fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE | fcntl.F_SEAL_SEAL)
    return fd


@functools.cache
def program() -> bytes:
    """The filter as a BPF program, compiled by libseccomp."""
    lib = _library()
    context = lib.seccomp_init(ALLOW)
    if not context:
        raise SeccompError("seccomp_init failed")
    try:
        _refuse_all(lib, context)
        with os.fdopen(os.memfd_create("labtrain-seccomp-export"), "w+b") as exported:
            _check(lib.seccomp_export_bpf(context, exported.fileno()), "export")
            exported.seek(0)
            return exported.read()
    finally:
        lib.seccomp_release(context)


def _refuse_all(lib: ctypes.CDLL, context: int) -> None:
    _check(lib.seccomp_attr_set(context, ATTR_ACT_BADARCH, KILL_PROCESS), "bad arch action")
    lib.seccomp_attr_set(context, ATTR_CTL_OPTIMIZE, 2)  # a binary tree where supported; else linear
    eperm = errno_action(errno.EPERM)
    for name in REFUSED:
        _rule(lib, context, eperm, name)
    _rule(lib, context, errno_action(errno.ENOSYS), "clone3")
    for flag in NAMESPACE_FLAGS:
        _rule(lib, context, eperm, "clone", (0, CMP_MASKED_EQ, flag, flag))
    for request in TERMINAL_INPUT:
        _rule(lib, context, eperm, "ioctl", (1, CMP_MASKED_EQ, 0xFFFFFFFF, request))
    # personality: only the default (0) and the query (0xffffffff) of its low 32 bits, the
    # ones the kernel reads. Any other value has two neighbouring bits that differ.
    for bit in range(31):
        pair = (1 << bit) | (1 << (bit + 1))
        for one in (1 << bit, 1 << (bit + 1)):
            _rule(lib, context, eperm, "personality", (0, CMP_MASKED_EQ, pair, one))
    no_family = errno_action(errno.EAFNOSUPPORT)
    for family in range(LAST_FAMILY + 1):
        if family not in SOCKET_FAMILIES:
            _rule(lib, context, no_family, "socket", (0, CMP_EQ, family, 0))
    _rule(lib, context, no_family, "socket", (0, CMP_GT, LAST_FAMILY, 0))


def _rule(lib: ctypes.CDLL, context: int, action: int, name: str, *compares: tuple[int, int, int, int]) -> None:
    number = lib.seccomp_syscall_resolve_name(name.encode())
    if number < 0:  # not a system call of this architecture (or one this libseccomp does not know)
        number = NUMBERS.get(name, -1)
        if number < 0:
            return
    array = (_Compare * len(compares))(*(_Compare(*compare) for compare in compares))
    _check(lib.seccomp_rule_add_exact_array(context, action, number, len(compares), array), name)


@functools.cache
def _library() -> ctypes.CDLL:
    path = ctypes.util.find_library("seccomp") or "libseccomp.so.2"
    try:
        lib = ctypes.CDLL(path)
    except OSError as exc:
        raise SeccompError(f"libseccomp is not installed ({exc})") from exc
    lib.seccomp_init.argtypes, lib.seccomp_init.restype = [ctypes.c_uint32], ctypes.c_void_p
    lib.seccomp_release.argtypes, lib.seccomp_release.restype = [ctypes.c_void_p], None
    lib.seccomp_attr_set.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_uint32]
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_rule_add_exact_array.argtypes = [
        ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint, ctypes.POINTER(_Compare),
    ]  # fmt: skip
    lib.seccomp_export_bpf.argtypes = [ctypes.c_void_p, ctypes.c_int]
    return lib


def _check(result: int, what: str) -> None:
    if result < 0:
        raise SeccompError(f"libseccomp refused {what}: {os.strerror(-result)}")
