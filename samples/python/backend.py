#!/usr/bin/env python3
"""A Gateway backend in Python 3, standard library only: the model for backends in other languages.

Written from docs/protocol.md ("the spec"); section numbers below (§n) point into it. It serves:

  * any method on /echo, /echo/... and /echo?...  the echo behaviour: a non-empty body comes back byte for
                                                  byte, an empty one as "METHOD target\\n"; headers
                                                  x-echo-delay-ms (0..60000) and x-echo-status (200..599)
  * POST /counter/{name}                          increments the counter, replies with its new value
  * GET  /counter/{name}                          replies with the counter's value
  * GET  /stats                                   JSON: how many times a handler ran, replays, drops
  * anything else                                 ERROR NOT_FOUND

Retries are answered from a replay cache (§5), deadlines are honoured (§4.1), PING gets PONG and CANCEL stops
a waiting echo (§4.4), big messages are fragmented both ways (§6) and bad input is dropped or answered with
ERROR MALFORMED (§7). Run:  python3 backend.py --socket /tmp/py.sock
"""
import argparse
import errno
import json
import logging
import os
import select
import signal
import socket
import stat
import struct
import sys
import threading
import time
from collections import OrderedDict

log = logging.getLogger("backend")

# §3 The common header: magic, version, kind, flags, reserved, attempt, correlation_id, budget_ms, payload_length.
HEADER = struct.Struct(">2sBBBBHQII")
MAGIC, VERSION = b"GD", 1
REQUEST, RESPONSE, ERROR, PING, PONG, CANCEL = 1, 2, 3, 4, 5, 6
FLAG_FRAGMENT, FLAG_REPLAY = 0x01, 0x02
FRAGMENT_OFFSET = struct.Struct(">I")  # §6: follows the header in a fragment
FRAGMENT_HEADER_SIZE = HEADER.size + FRAGMENT_OFFSET.size  # 28

# §1 Largest datagram anyone may send; we read one byte more to recognise a truncated (oversized) one.
MAX_DATAGRAM = 212_960

# §4.3 ERROR codes.
MALFORMED, NOT_FOUND, OVERLOADED, TOO_LARGE, DEADLINE_EXCEEDED, INTERNAL = 1, 2, 3, 4, 5, 6

# Limits: §5 replay cache, §6 reassembly (the same defaults as the C# helper), and our own in-flight limit.
REPLAY_CACHE_SIZE, REPLAY_CACHE_TTL = 10_000, 120.0
# §6: 17 MiB, the largest message the gateway sends (a 16 MiB body plus up to 1 MiB of envelope fields).
MAX_MESSAGE, MAX_REASSEMBLY, REASSEMBLY_TIMEOUT = 17 * 1024 * 1024, 64 * 1024 * 1024, 10.0
MAX_IN_FLIGHT = 1024
SEND_TIMEOUT = 5.0  # a client that does not read for this long loses its reply


class Malformed(Exception):
    """A REQUEST payload breaks a rule of §4.1."""


# ---------------------------------------------------------------------------------------------------------
# Encoding (§3, §4.2, §4.3, §6)

def str8(b):
    return bytes([len(b)]) + b


def str16(b):
    return struct.pack(">H", len(b)) + b


def response_payload(status, headers, body):
    """§4.2: status, header_count, headers, body."""
    parts = [struct.pack(">HH", status, len(headers))]
    for name, value in headers:
        parts += [str8(name), str16(value)]
    parts.append(body)
    return b"".join(parts)


def error_payload(code, message):
    """§4.3: code and a message of at most 1,024 bytes (ours are ASCII, so cutting bytes is safe)."""
    return struct.pack(">H", code) + str16(message.encode()[:1024])


def datagrams(kind, cid, attempt, payload, flags=0):
    """Splits a message into datagrams: one if it fits (§3), otherwise fragments (§6), every fragment
    carrying the message's header (with its flags, e.g. REPLAY) plus FRAGMENT and the whole payload_length."""
    if HEADER.size + len(payload) <= MAX_DATAGRAM:
        return [HEADER.pack(MAGIC, VERSION, kind, flags, 0, attempt, cid, 0, len(payload)) + payload]
    header = HEADER.pack(MAGIC, VERSION, kind, flags | FLAG_FRAGMENT, 0, attempt, cid, 0, len(payload))
    step = MAX_DATAGRAM - FRAGMENT_HEADER_SIZE
    view = memoryview(payload)
    return [header + FRAGMENT_OFFSET.pack(offset) + view[offset:offset + step]
            for offset in range(0, len(payload), step)]


# ---------------------------------------------------------------------------------------------------------
# Decoding a REQUEST payload (§4.1)

class Reader:
    def __init__(self, data):
        self.data, self.pos = data, 0

    def take(self, n, field):
        if self.pos + n > len(self.data):
            raise Malformed(f"'{field}' runs past the end of the payload")
        self.pos += n
        return self.data[self.pos - n:self.pos]

    def str8(self, field):
        return self.take(self.take(1, field)[0], field)

    def str16(self, field):
        return self.take(struct.unpack(">H", self.take(2, field))[0], field)


# §4.1: header names are lower-case tokens (RFC 9110 tchar without A-Z).
HEADER_NAME_BYTES = b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz"


def parse_request(payload):
    r = Reader(payload)
    method = r.str8("method")
    if not 1 <= len(method) <= 32:
        raise Malformed("the method must have 1 to 32 bytes")
    target = r.str16("target")
    if not target.startswith(b"/"):
        raise Malformed("the target must start with '/'")
    traceparent = r.str8("traceparent")
    if len(traceparent) not in (0, 55):
        raise Malformed("the traceparent must have 0 or 55 bytes")
    tracestate = r.str16("tracestate")
    if len(tracestate) > 512 or (tracestate and not traceparent):
        raise Malformed("bad tracestate")
    count = struct.unpack(">H", r.take(2, "header_count"))[0]
    headers = []
    for _ in range(count):
        name = r.str8("header name")
        if not name:
            raise Malformed("empty header name")
        if name.strip(HEADER_NAME_BYTES):
            raise Malformed(f"header name {name!r} is not a lower-case token")
        headers.append((name, r.str16("header value")))
    body = payload[r.pos:]
    try:
        return method.decode("ascii"), target.decode("utf-8"), headers, body
    except UnicodeDecodeError as e:
        raise Malformed(f"bad text: {e}") from None


def header_value(headers, name):
    return next((value for n, value in headers if n == name), None)


# ---------------------------------------------------------------------------------------------------------
# The backend

class Entry:
    """A replay cache entry (§5): running while reply is None, then the finished (kind, payload)."""
    __slots__ = ("reply", "cancel", "finished_at")

    def __init__(self):
        self.reply, self.cancel, self.finished_at = None, threading.Event(), None


class Partial:
    """A message being reassembled (§6)."""
    __slots__ = ("buf", "next", "started")

    def __init__(self, length, started):
        self.buf, self.next, self.started = bytearray(length), 0, started


class Backend:
    def __init__(self, path):
        self.path = path
        self.sock, self.inode = bind_safely(path)
        # Blocking sends, but bounded: a full client queue makes sendto wait (PLATFORM.md), at most this long.
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, struct.pack("ll", int(SEND_TIMEOUT), 0))
        self.lock = threading.Lock()  # guards everything below
        self.cache = OrderedDict()    # (sender, correlation_id) -> Entry, oldest first
        self.partials = {}            # (sender, kind, correlation_id, attempt) -> Partial
        self.partial_bytes = 0
        self.in_flight = 0
        self.counters = {}
        self.stats = {"executions": 0, "replayed": 0, "dropped": 0, "duplicates": 0}
        self.stop = threading.Event()

    # -- the receive loop (§7: nothing that arrives may crash, block or leak) -------------------------
    def serve(self):
        next_sweep = 0.0
        while not self.stop.is_set():
            # select with a timeout so that SIGTERM/SIGINT (which set self.stop) end the loop promptly.
            if self.sock in select.select([self.sock], [], [], 0.5)[0]:
                data, sender = self.sock.recvfrom(MAX_DATAGRAM + 1)
                try:
                    self.on_datagram(data, sender, time.monotonic())
                except Exception:  # a bug here must not take the backend down
                    log.exception("failed to handle a datagram")
            if time.monotonic() >= next_sweep:
                self.sweep(time.monotonic())
                next_sweep = time.monotonic() + 1.0

    def drop(self, reason):
        self.stats["dropped"] += 1
        log.info("dropped a datagram: %s", reason)

    def on_datagram(self, data, sender, now):
        if len(data) > MAX_DATAGRAM:
            return self.drop("oversized (filled the receive buffer)")
        if len(data) < HEADER.size:
            return self.drop("shorter than the header")
        magic, version, kind, flags, _, attempt, cid, budget, plen = HEADER.unpack_from(data)
        if magic != MAGIC:
            return self.drop("bad magic")
        if version != VERSION:
            return self.drop(f"unsupported version {version}")
        if kind not in (REQUEST, PING, CANCEL):
            return self.drop(f"kind {kind} is not accepted by a backend")
        if flags & ~(FLAG_FRAGMENT | FLAG_REPLAY) or (flags & FLAG_FRAGMENT and kind != REQUEST) or cid == 0:
            return self.drop("bad flags or correlation id 0")
        if not sender:
            return self.drop("unbound sender: a reply could not reach it (§1)")
        if not flags & FLAG_FRAGMENT and plen != len(data) - HEADER.size:
            return self.drop("payload_length does not match the datagram")

        if kind != REQUEST and plen != 0:
            return self.drop("PING or CANCEL with a payload")

        if kind == PING:  # §4.4: always answered, same correlation_id and attempt
            self.send(sender, PONG, cid, attempt, b"")
            return None
        if kind == CANCEL:  # §4.4: stop the work, never reply
            with self.lock:
                entry = self.cache.get((sender, cid))
            if entry is not None and entry.reply is None:
                entry.cancel.set()
            return None

        received = now
        if flags & FLAG_FRAGMENT:
            whole = self.reassemble(sender, cid, attempt, plen, data, now)
            if whole is None:
                return None
            payload, received = whole
        else:
            payload = data[HEADER.size:]
        # §4.1: the deadline counts from the receipt of the (first datagram of the) request.
        deadline = received + budget / 1000 if budget else None
        return self.on_request(sender, cid, attempt, deadline, payload)

    # -- §6 reassembly ---------------------------------------------------------------------------------
    def reassemble(self, sender, cid, attempt, plen, data, now):
        if len(data) <= FRAGMENT_HEADER_SIZE:
            return self.drop("a fragment without data")
        (offset,) = FRAGMENT_OFFSET.unpack_from(data, HEADER.size)
        chunk = data[FRAGMENT_HEADER_SIZE:]
        if offset + len(chunk) > plen or HEADER.size + plen <= MAX_DATAGRAM:
            return self.drop("fragment runs past payload_length, or fragments a message that fits a datagram")
        key = (sender, REQUEST, cid, attempt)
        with self.lock:
            part = self.partials.get(key)
            if offset == 0:
                if part is not None:
                    self.free(key)
                if plen > MAX_MESSAGE:  # refused once per message; its later fragments find no partial
                    part = None
                elif self.partial_bytes + plen > MAX_REASSEMBLY:
                    return self.drop("reassembly memory limit")
                else:
                    part = self.partials[key] = Partial(plen, now)
                    self.partial_bytes += plen
            elif part is None or offset != part.next or plen != len(part.buf):
                if part is not None:
                    self.free(key)
                return self.drop("fragment out of order or without its first fragment")
        if part is None:
            self.send(sender, ERROR, cid, attempt, error_payload(TOO_LARGE, f"{plen} bytes > {MAX_MESSAGE}"))
            return None
        part.buf[offset:offset + len(chunk)] = chunk
        part.next += len(chunk)
        if part.next < plen:
            return None
        with self.lock:
            self.free(key)
        return bytes(part.buf), part.started

    def free(self, key):
        self.partial_bytes -= len(self.partials.pop(key).buf)

    def sweep(self, now):
        """Frees partial messages older than the reassembly timeout and replay entries older than the TTL."""
        with self.lock:
            for key in [k for k, p in self.partials.items() if now - p.started > REASSEMBLY_TIMEOUT]:
                self.free(key)
                self.drop("reassembly timeout")
            self.evict(now)

    def evict(self, now):
        while self.cache:
            key, entry = next(iter(self.cache.items()))
            too_old = entry.finished_at is not None and now - entry.finished_at > REPLAY_CACHE_TTL
            if len(self.cache) <= REPLAY_CACHE_SIZE and not too_old:
                break
            del self.cache[key]

    # -- §5 at-most-once, §4.1 deadlines ---------------------------------------------------------------
    def on_request(self, sender, cid, attempt, deadline, payload):
        try:
            request = parse_request(payload)
        except Malformed as e:  # §7: the header was fine, so the client can be told
            self.send(sender, ERROR, cid, attempt, error_payload(MALFORMED, str(e)))
            return
        key = (sender, cid)
        replay = refusal = None
        with self.lock:
            entry = self.cache.get(key)
            if entry is not None and entry.reply is None:
                self.stats["duplicates"] += 1  # still executing: its reply answers this attempt too
                return
            if entry is not None:
                self.stats["replayed"] += 1
                replay = entry.reply
            elif deadline is not None and time.monotonic() >= deadline:
                refusal = (DEADLINE_EXCEEDED, "the budget ran out before the request started")
            elif self.in_flight >= MAX_IN_FLIGHT:
                refusal = (OVERLOADED, "too many requests in flight")
            else:
                entry = self.cache[key] = Entry()
                self.evict(time.monotonic())
                self.in_flight += 1
                self.stats["executions"] += 1
        if replay is not None:  # the cached reply, with the retry's attempt and the REPLAY flag
            self.send(sender, replay[0], cid, attempt, replay[1], FLAG_REPLAY)
        elif refusal is not None:  # not executed, so not cached: a retry may still run it
            self.send(sender, ERROR, cid, attempt, error_payload(*refusal))
        else:
            threading.Thread(target=self.execute, args=(sender, cid, attempt, deadline, request, entry),
                             daemon=True).start()

    def execute(self, sender, cid, attempt, deadline, request, entry):
        try:
            reply = self.handle(*request, deadline, entry.cancel)
        except Exception as e:
            log.exception("handler failed")
            reply = (ERROR, error_payload(INTERNAL, type(e).__name__))
        key = (sender, cid)
        with self.lock:
            self.in_flight -= 1
            if reply is None:  # cancelled: no reply, and the key is forgotten (a client never retries a cancel)
                self.cache.pop(key, None)
                return
            entry.reply, entry.finished_at = reply, time.monotonic()
            if key in self.cache:
                self.cache.move_to_end(key)  # the cache's age counts from the reply
        self.send(sender, reply[0], cid, attempt, reply[1])

    def send(self, address, kind, cid, attempt, payload, flags=0):
        try:
            for datagram in datagrams(kind, cid, attempt, payload, flags):
                self.sock.sendto(datagram, address)
        except OSError as e:  # the client is gone (ENOENT, ECONNREFUSED) or does not read (EAGAIN)
            log.info("could not reply to %r: %s", address, e)

    # -- the routes --------------------------------------------------------------------------------------
    def handle(self, method, target, headers, body, deadline, cancel):
        """Returns (RESPONSE or ERROR, payload), or None when cancelled."""
        path = target.split("?", 1)[0]
        if path == "/echo" or path.startswith("/echo/"):
            return self.echo(method, target, headers, body, deadline, cancel)
        if path.startswith("/counter/") and len(path) > len("/counter/"):
            name = path[len("/counter/"):]
            with self.lock:
                if method == "POST":
                    self.counters[name] = self.counters.get(name, 0) + 1
                elif method != "GET":
                    return text(405, "use GET or POST\n")
                value = self.counters.get(name, 0)
            return text(200, f"{value}")
        if path == "/stats" and method == "GET":
            with self.lock:
                body = json.dumps(self.stats).encode()
            return RESPONSE, response_payload(200, [(b"content-type", b"application/json")], body)
        return ERROR, error_payload(NOT_FOUND, f"no route for {method} {path}")

    @staticmethod
    def echo(method, target, headers, body, deadline, cancel):
        """ECHO.md: wait x-echo-delay-ms (honouring CANCEL and the deadline), then echo."""
        try:
            delay = int(header_value(headers, b"x-echo-delay-ms") or 0)
            status = int(header_value(headers, b"x-echo-status") or 200)
        except ValueError:
            return text(400, "x-echo-delay-ms and x-echo-status must be integers\n")
        if not (0 <= delay <= 60_000 and 200 <= status <= 599):
            return text(400, "x-echo-delay-ms must be 0..60000 and x-echo-status 200..599\n")
        if delay:
            wait = delay / 1000
            if deadline is not None and time.monotonic() + wait > deadline:
                # The budget runs out before the delay: wait until the deadline, then give up (§4.3 code 5).
                if cancel.wait(max(0.0, deadline - time.monotonic())):
                    return None
                return ERROR, error_payload(DEADLINE_EXCEEDED, "the budget ran out while waiting")
            if cancel.wait(wait):
                return None
        if status in (204, 205, 304):
            # These statuses have no content (protocol.md 4.2, "Empty bodies").
            return RESPONSE, response_payload(status, [], b"")
        if body:
            content_type = header_value(headers, b"content-type") or b"application/octet-stream"
            return RESPONSE, response_payload(status, [(b"content-type", content_type)], body)
        return text(status, f"{method} {target}\n")


def text(status, s):
    return RESPONSE, response_payload(status, [(b"content-type", b"text/plain; charset=utf-8")], s.encode())


def bind_safely(path):
    """Binds to path. A stale socket file (its process died) is replaced; a live backend or a file that is
    not a socket is left alone. Returns the socket and the inode of the file it created."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        sock.bind(path)
    except OSError as e:
        if e.errno != errno.EADDRINUSE:
            raise
        if not stat.S_ISSOCK(os.lstat(path).st_mode):
            sys.exit(f"{path} exists and is not a socket")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            probe.connect(path)
            sys.exit(f"another backend is live at {path}")
        except ConnectionRefusedError:
            log.warning("replacing the stale socket file %s", path)
            os.unlink(path)
            sock.bind(path)
        finally:
            probe.close()
    return sock, os.stat(path).st_ino


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--socket", required=True, help="path to bind the datagram socket to")
    parser.add_argument("--verbose", action="store_true", help="log every dropped datagram")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(message)s")
    backend = Backend(args.socket)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: backend.stop.set())
    print(f"listening on {args.socket}", flush=True)
    try:
        backend.serve()
    finally:
        backend.sock.close()
        try:  # unlink only our own file: another process may have re-bound the path since (PLATFORM.md)
            if os.stat(args.socket).st_ino == backend.inode:
                os.unlink(args.socket)
        except FileNotFoundError:
            pass


if __name__ == "__main__":
    main()
