"""What a hostile student might submit: each mode tries one way out of the sandbox and writes
what it saw to outputs/result.json (tests/workers/sandbox/test_escapes.py reads it)."""

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
elif mode == "ok":
    labtrain_job.report(epoch=1, accuracy=1.0)
    result["ok"] = True
save()
