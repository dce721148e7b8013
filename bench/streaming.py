#!/usr/bin/env python3
"""Clients for bench/streaming.sh (issue 21), Python standard library only.

  ttfb SOCKET N            N sequential streamed GETs (x-echo-stream-count: 2, 200 ms apart), after N/3 (at least 50)
                           unmeasured ones: the time from sending the request to the first byte of the body (not of
                           the head), a new connection each; prints JSON with p50/p90/p99 µs
  hold SOCKET N SECONDS PID  opens N connections at once, each a streamed GET of one chunk per second, waits until every
                           one has its head and first chunk, holds them SECONDS while sampling PID's VmRSS every 100 ms;
                           prints JSON: streams open, RSS before, max while held (KiB)
"""
import json
import socket
import sys
import time


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def request(target, headers):
    lines = [f"GET {target} HTTP/1.1", "Host: localhost"] + [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def first_body_byte(sock, data=b""):
    """Reads the head, then the first byte of a chunked body; returns (status line, time of the first body byte)."""
    while b"\r\n\r\n" not in data:
        more = sock.recv(65536)
        if not more:
            raise EOFError("connection closed before the head ended")
        data += more
    head, rest = data.split(b"\r\n\r\n", 1)
    status = head.split(b"\r\n", 1)[0].decode()
    chunked = b"transfer-encoding: chunked" in head.lower()
    # Chunked: "size\r\n" then data; the first body byte is the first data byte after the size line.
    while True:
        if chunked and b"\r\n" in rest:
            size_line, after = rest.split(b"\r\n", 1)
            if int(size_line.split(b";")[0], 16) > 0 and after:
                return status, time.perf_counter()
        elif not chunked and rest:
            return status, time.perf_counter()
        more = sock.recv(65536)
        if not more:
            raise EOFError("connection closed before the first body byte")
        rest += more


def ttfb(path, n):
    samples = []
    headers = {"x-echo-stream-count": "2", "x-echo-stream-interval-ms": "200", "x-echo-stream-chunk-bytes": "64"}
    warm = max(50, n // 3)  # unmeasured first: a process that just started is still compiling its stream path (JIT tiers)
    for i in range(-warm, n):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(path)
        start = time.perf_counter()
        s.sendall(request(f"/echo/ttfb{i}", headers))
        status, first = first_body_byte(s)
        if " 200" not in status:
            raise SystemExit(f"{path}: {status}")
        if i >= 0:
            samples.append((first - start) * 1e6)
        s.close()  # the second chunk is never read: the stream is cancelled
    samples.sort()
    pick = lambda q: round(samples[min(len(samples) - 1, int(q * len(samples)))])
    print(json.dumps({"n": n, "p50_us": pick(0.5), "p90_us": pick(0.9), "p99_us": pick(0.99), "min_us": round(samples[0])}))


def hold(path, n, seconds, pid):
    before = rss_kib(pid)
    headers = {"x-echo-stream-count": "100000", "x-echo-stream-interval-ms": "1000", "x-echo-stream-chunk-bytes": "64"}
    socks = []
    for i in range(n):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(path)
        s.sendall(request(f"/echo/hold{i}", headers))
        socks.append(s)
    opened = 0
    for s in socks:
        s.settimeout(60)
        status, _ = first_body_byte(s)
        opened += " 200" in status
    peak = rss_kib(pid)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        peak = max(peak, rss_kib(pid))
        time.sleep(0.1)
    # Every stream is still open: each connection still delivers (one chunk per second).
    alive = 0
    for s in socks:
        s.settimeout(5)
        try:
            alive += len(s.recv(65536)) > 0
        except OSError:
            pass
    for s in socks:
        s.close()
    print(json.dumps({"streams": n, "opened": opened, "alive_after_hold": alive, "rss_before_kib": before, "rss_max_kib": peak}))


if __name__ == "__main__":
    if sys.argv[1:2] == ["ttfb"]:
        ttfb(sys.argv[2], int(sys.argv[3]))
    elif sys.argv[1:2] == ["hold"]:
        hold(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5]))
    else:
        sys.exit(__doc__)
