"""What a hostile student might submit: each mode tries one way out of the sandbox and writes
what it saw to outputs/result.json (tests/service/sandbox/test_escapes.py and
test_kernel_attacks.py read it)."""

import ctypes
import errno
import json
import os
import signal
import socket
import subprocess
import sys
import time

import labtrain_job

mode, rest = sys.argv[1], sys.argv[2:]
result = {}


def save():
    (labtrain_job.outputs_dir() / "result.json").write_text(json.dumps(result))


libc = ctypes.CDLL(None, use_errno=True)
KEY_CALLS = {"x86_64": (248, 249, 250), "aarch64": (217, 218, 219)}  # add_key, request_key, keyctl
SESSION_KEYRING, USER_KEYRING = -3, -4
KEYCTL_DESCRIBE, KEYCTL_READ = 6, 11


def key_call(name, *args):
    """A keyring system call: its answer, or the name of the error it gave."""
    number = KEY_CALLS[os.uname().machine][("add_key", "request_key", "keyctl").index(name)]
    answer = libc.syscall(ctypes.c_long(number), *(ctypes.c_long(a) if isinstance(a, int) else a for a in args))
    return answer if answer >= 0 else errno.errorcode[ctypes.get_errno()]


def keys_in(keyring):
    """The descriptions of the keys a keyring holds, or the error reading it gave."""
    ids = ctypes.create_string_buffer(4096)
    size = key_call("keyctl", KEYCTL_READ, keyring, ids, len(ids))
    if isinstance(size, str):
        return size
    found = []
    for index in range(0, min(size, len(ids)), 4):
        key = int.from_bytes(ids.raw[index : index + 4], sys.byteorder)
        text = ctypes.create_string_buffer(512)
        if not isinstance(key_call("keyctl", KEYCTL_DESCRIBE, key, text, len(text)), str):
            found.append(text.value.decode(errors="replace").rsplit(";", 1)[-1])
    return found


if mode == "net":
    for target in [*(("127.0.0.1", int(port)) for port in rest), ("1.1.1.1", 53), ("8.8.8.8", 443)]:
        probe = socket.socket()
        probe.settimeout(2)
        try:
            probe.connect(target)
            result[f"{target[0]}:{target[1]}"] = "connected"
        except OSError as exc:
            result[f"{target[0]}:{target[1]}"] = type(exc).__name__
    try:
        socket.getaddrinfo("pypi.org", 443)
        result["dns"] = "resolved"
    except OSError:
        result["dns"] = "failed"
elif mode == "read":
    for path in rest:
        try:
            with open(path, "rb") as handle:
                result[path] = "read " + handle.read(200).decode(errors="replace")
        except OSError as exc:
            result[path] = type(exc).__name__
    result["/"] = sorted(os.listdir("/"))
elif mode == "environ":
    result["environ"] = dict(os.environ)
    result["uid"], result["pid"] = os.getuid(), os.getpid()
elif mode == "write":
    for path in rest:
        try:
            with open(path, "w") as handle:
                handle.write("escaped")
            result[path] = "written"
        except OSError as exc:
            result[path] = type(exc).__name__
elif mode == "fork":
    children, error = 0, None
    try:
        for _ in range(10_000):
            if os.fork() == 0:
                time.sleep(60)
                os._exit(0)
            children += 1
    except OSError as exc:
        error = str(exc)
    result.update(children=children, error=error)
elif mode == "memory":
    blocks = []
    for _ in range(40):
        blocks.append(bytearray(50 * 1024 * 1024))  # zeroed, so every page is really taken
        result["allocated_mb"] = 50 * len(blocks)
elif mode == "sigterm":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    labtrain_job.report(epoch=1, started=1)
    while True:
        time.sleep(0.1)
elif mode == "daemon":
    subprocess.Popen(
        [sys.executable, "-c", f"import time; time.sleep(600)  # {rest[0]}"],
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    result["started"] = True
elif mode == "outputs":
    with open(labtrain_job.outputs_dir() / "big.bin", "wb") as handle:
        for _ in range(100):
            handle.write(bytes(1024 * 1024))
elif mode == "keyrings":  # rest: a key the worker's session holds, a key to leave behind
    wanted, left = rest
    result["session"], result["user"] = keys_in(SESSION_KEYRING), keys_in(USER_KEYRING)
    result["request"] = key_call("request_key", b"user", wanted.encode(), None, 0)
    for name, keyring in (("add_session", SESSION_KEYRING), ("add_user", USER_KEYRING)):
        result[name] = key_call("add_key", b"user", left.encode(), b"from a job", 10, keyring)
    result["found_left"] = key_call("request_key", b"user", left.encode(), None, 0)
elif mode == "userns":
    result["unshare_tool"] = subprocess.run(["unshare", "--user", "true"], capture_output=True).returncode
    result["unshare"] = "created" if libc.unshare(0x10000000) == 0 else errno.errorcode[ctypes.get_errno()]
    result["namespaces"] = {}
    for name, flag in {"mount": 0x20000, "net": 0x40000000, "pid": 0x20000000, "ipc": 0x08000000}.items():
        made = libc.unshare(flag) == 0
        result["namespaces"][name] = "created" if made else errno.errorcode[ctypes.get_errno()]
elif mode == "mountinfo":
    with open("/proc/self/mountinfo") as handle:
        result["mountinfo"] = handle.read()
elif mode == "files":
    held = []
    try:
        for _ in range(100_000):
            held.append(open("/dev/null"))  # noqa: SIM115 (held open on purpose)
        result["error"] = None
    except OSError as exc:
        result["error"] = errno.errorcode.get(exc.errno, str(exc))
    result["opened"] = len(held)
    for handle in held:  # saving the result needs a file of its own
        handle.close()
elif mode == "dataloader":
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    numbers = TensorDataset(torch.arange(64, dtype=torch.float32))
    batches = DataLoader(numbers, batch_size=8, num_workers=2)  # forked workers, shared memory
    result["sum"] = float(sum(batch[0].sum() for batch in batches))
elif mode == "ok":
    labtrain_job.report(epoch=1, accuracy=1.0)
    result["ok"] = True
elif mode == "hold_deleted":  # a file deleted but kept open: no walk of the folder sees it
    most_mb, held = int(rest[0]), 0
    handle = open("/job/home/held.bin", "wb")  # noqa: SIM115 (held open on purpose)
    os.unlink("/job/home/held.bin")
    try:
        for _ in range(most_mb):
            handle.write(bytes(1024 * 1024))
            handle.flush()
            held += 1
            labtrain_job.report(held_mb=held)
        os.fsync(handle.fileno())
    except OSError as exc:
        labtrain_job.report(held_mb=held, refused=1)
        result["error"] = type(exc).__name__
        time.sleep(30)  # holding what it has, until the worker stops it
    result["held_mb"] = held
elif mode == "many_files":
    report_file = open(labtrain_job.outputs_dir() / "result.json", "w")  # noqa: SIM115 (before the inodes run out)
    folder = labtrain_job.outputs_dir() / "many"
    folder.mkdir()
    made = 0
    try:
        for number in range(int(rest[0])):
            (folder / str(number)).touch()
            made += 1
    except OSError as exc:
        result["error"] = type(exc).__name__
    result["made"] = made
    labtrain_job.report(made=made)
    report_file.write(json.dumps(result))
    report_file.close()
    time.sleep(30)  # the worker stops it
elif mode == "event_flood":  # cell-like events straight down the events pipe
    count = int(rest[0])
    with os.fdopen(int(os.environ["JOB_EVENTS_FD"]), "w", closefd=False) as events:
        for number in range(1, count + 1):
            events.write(json.dumps({"cell": number, "cells": count, "line": f"flood {number}"}) + "\n")
    for _ in range(int(rest[1]) * 1024 if len(rest) > 1 else 0):  # then megabytes of stdout
        print("y" * 1023)
    result["sent"] = count
elif mode == "swap_links":  # a folder of outputs/ swapped for a link to a host folder, again and again
    target, seconds = rest[0], float(rest[1])
    outputs = labtrain_job.outputs_dir()
    (outputs / "d").mkdir()
    (outputs / "d" / "own.txt").write_text("mine")
    os.symlink(target, outputs / "link")
    exchange = ctypes.CDLL(None, use_errno=True).renameat2  # RENAME_EXCHANGE, atomically
    swaps, deadline = 0, time.monotonic() + seconds
    while time.monotonic() < deadline:
        swaps += exchange(-100, str(outputs / "d").encode(), -100, str(outputs / "link").encode(), 2) == 0
    if (outputs / "d").is_dir() and not (outputs / "d").is_symlink():
        exchange(-100, str(outputs / "d").encode(), -100, str(outputs / "link").encode(), 2)
    result["swaps"] = swaps  # d is left a link for the harvest
save()
