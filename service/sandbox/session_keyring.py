"""Runs a command in a new, empty session keyring of its own: `python session_keyring.py CMD ...`.

A process inherits its parent's session keyring, so without this a sandbox would start
holding the worker's (and whatever keys the worker's session had). It runs as a script
between the launcher and bubblewrap, with the standard library alone (`python -I -S`).
"""

import ctypes
import errno
import os
import sys

KEYCTL_JOIN_SESSION_KEYRING = 1
SYS_KEYCTL = {"x86_64": 250, "aarch64": 219}


def join_new_session_keyring() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    keyctl = ctypes.c_long(SYS_KEYCTL[os.uname().machine])
    # A null name: a new anonymous keyring, which nothing else can join.
    if libc.syscall(keyctl, ctypes.c_long(KEYCTL_JOIN_SESSION_KEYRING), None) >= 0:
        return
    failure = ctypes.get_errno()
    # No keyrings in this kernel, or a filter above the worker refuses them: then no keyring
    # is shared either (and the sandbox's own filter refuses them to the program regardless).
    if failure not in (errno.ENOSYS, errno.EPERM):
        sys.exit(f"cannot start a new session keyring: {os.strerror(failure)}")


if __name__ == "__main__":
    join_new_session_keyring()
    os.execvp(sys.argv[1], sys.argv[1:])
