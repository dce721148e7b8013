#!/usr/bin/env python3
"""Exec to first 200: starts a gateway command, polls its Unix socket with `GET PATH` (a new connection each time,
1 ms apart) until the answer is 200, then lets it idle and reads its RSS. Prints one JSON object:
{"first_200_ms": ..., "first_200_cpu_ms": ..., "idle_rss_kb": ..., "idle_s": ...}
(first_200_cpu_ms: the CPU time the gateway used until then, all threads; it moves less than the wall time when
other work shares the machine). The gateway is stopped with SIGTERM afterwards.

    bench/first200.py --socket /tmp/x/gw.sock [--path /echo/hello] [--idle 3] -- ./Gateway --Gateway:Listen:UnixSocket=/tmp/x/gw.sock ...

Used by bench/aot-compare.sh (the JIT and Native AOT builds side by side).
"""
import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time


def status_of(path, request):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(5)
        s.connect(path)
        s.sendall(request)
        data = b""
        while b"\r\n" not in data:
            chunk = s.recv(4096)
            if not chunk:
                return None
            data += chunk
        return int(data.split(b" ", 2)[1])


def cpu_ms(pid):
    """CPU time (user + system) the process has used so far, all its threads: less sensitive to a busy machine than wall time."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000 / os.sysconf("SC_CLK_TCK")


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return None


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--socket", required=True)
    p.add_argument("--path", default="/echo/hello")
    p.add_argument("--idle", type=float, default=3.0, help="seconds of idling after the first 200 before RSS is read")
    p.add_argument("--timeout", type=float, default=60.0)
    p.add_argument("--log", default=os.devnull, help="file for the gateway's output")
    p.add_argument("cmd", nargs=argparse.REMAINDER)
    a = p.parse_args()
    cmd = a.cmd[1:] if a.cmd and a.cmd[0] == "--" else a.cmd
    if not cmd:
        p.error("no command")
    request = f"GET {a.path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode()
    if os.path.exists(a.socket):
        os.unlink(a.socket)

    with open(a.log, "ab") as log:
        start = time.monotonic_ns()
        proc = subprocess.Popen(cmd, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        first = None
        try:
            while first is None:
                if proc.poll() is not None:
                    print(json.dumps({"error": f"exited with {proc.returncode} before a 200"}))
                    return 1
                if (time.monotonic_ns() - start) / 1e9 > a.timeout:
                    print(json.dumps({"error": f"no 200 within {a.timeout} s"}))
                    return 1
                try:
                    if status_of(a.socket, request) == 200:
                        first = time.monotonic_ns()
                        first_cpu = cpu_ms(proc.pid)
                        break
                except (FileNotFoundError, ConnectionRefusedError, ConnectionResetError, socket.timeout, OSError):
                    pass
                time.sleep(0.001)
            time.sleep(a.idle)
            rss = rss_kb(proc.pid)
            print(json.dumps({"first_200_ms": round((first - start) / 1e6, 1), "first_200_cpu_ms": first_cpu, "idle_rss_kb": rss, "idle_s": a.idle}))
            return 0
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


if __name__ == "__main__":
    sys.exit(main())
