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

Streams (§4.5): the PONG announces STREAM_REPLY and STREAM_REQUEST. On /echo, x-echo-stream-count: N (with
x-echo-stream-interval-ms: M and x-echo-stream-chunk-bytes: B, also as query parameters) answers N chunks,
M ms apart, as a streamed reply ("chunk i" lines, or "data: chunk i" events when the caller accepts
text/event-stream); x-echo-stream: 1 streams the body back. A streamed upload (REQUEST_HEAD, CHUNKs, END) is
read with credit (a 256 KiB window), echoed back as it arrives with x-echo-stream: 1, else collected (at most
16 MiB). A reply stream sends only within the client's CREDIT; a CANCEL stops it.

Retries are answered from a replay cache (§5; a request marked NO_RETRY keeps no reply there), deadlines are honoured (§4.1), PING gets PONG and CANCEL stops
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
from collections import OrderedDict, deque
from itertools import chain
from urllib.parse import parse_qs

log = logging.getLogger("backend")

# §3 The common header: magic, version, kind, flags, features, attempt, correlation_id, budget_ms, payload_length.
HEADER = struct.Struct(">2sBBBBHQII")
MAGIC, VERSION = b"GD", 1
REQUEST, RESPONSE, ERROR, PING, PONG, CANCEL = 1, 2, 3, 4, 5, 6
RESPONSE_HEAD, REQUEST_HEAD, CHUNK, END, CREDIT = 7, 8, 9, 10, 11  # §4.5 streams
FLAG_FRAGMENT, FLAG_REPLAY = 0x01, 0x02
STREAM_REPLY, STREAM_REQUEST, NO_RETRY = 0x01, 0x02, 0x04  # §4.5.1 the features byte
U32 = struct.Struct(">I")
FRAGMENT_OFFSET = struct.Struct(">I")  # §6: follows the header in a fragment
FRAGMENT_HEADER_SIZE = HEADER.size + FRAGMENT_OFFSET.size  # 28

# §1 Largest datagram anyone may send; we read one byte more to recognise a truncated (oversized) one.
MAX_DATAGRAM = 212_960
MAX_CHUNK_DATA = MAX_DATAGRAM - HEADER.size - 4  # §4.5.4: a CHUNK fits one datagram
MAX_CREDIT = 2**31 - 1                           # §4.5.5
UPLOAD_WINDOW = 256 * 1024                       # credit we grant a streamed upload (§4.5.5)
MAX_COLLECT = 16 * 1024 * 1024                   # the most the echo collects into one reply
STREAM_IDLE = 300.0  # §4.5.5 lets a sender give up: a gateway that vanished without CANCEL must not pin a thread

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


class Stopped(Exception):
    """The stream was cancelled by the client or broken by a rule of §4.5 (the reply, if any, is already sent)."""


class Idle(Exception):
    """A stream's peer went quiet for STREAM_IDLE seconds: no CREDIT for our reply, or no CHUNK of its upload."""


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


def datagrams(kind, cid, attempt, payload, flags=0, features=0):
    """Splits a message into datagrams: one if it fits (§3), otherwise fragments (§6), every fragment
    carrying the message's header (with its flags, e.g. REPLAY) plus FRAGMENT and the whole payload_length."""
    if HEADER.size + len(payload) <= MAX_DATAGRAM:
        return [HEADER.pack(MAGIC, VERSION, kind, flags, features, attempt, cid, 0, len(payload)) + payload]
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
    """A replay cache entry (§5): running while reply is None, then the finished (kind, payload).
    While it runs it may have an upload (a streamed request body) and a reply stream (§4.5)."""
    __slots__ = ("reply", "cancel", "finished_at", "attempt", "upload", "reply_stream", "no_retry")

    def __init__(self, attempt, no_retry=False):
        self.reply, self.cancel, self.finished_at = None, threading.Event(), None
        self.attempt, self.upload, self.reply_stream = attempt, None, None
        self.no_retry = no_retry  # §5 NO_RETRY: the client sends no other attempt, so the reply is not kept

    def stop(self):
        """CANCEL or a broken stream: the handler's waits end, and so do its streams."""
        self.cancel.set()
        for stream in (self.upload, self.reply_stream):
            if stream is not None:
                stream.stop()


class Call:
    """What a handler knows about its request beyond method, target, headers and body."""
    __slots__ = ("sender", "cid", "attempt", "deadline", "entry", "accepts_stream")

    def __init__(self, sender, cid, attempt, deadline, entry, accepts_stream):
        self.sender, self.cid, self.attempt, self.deadline = sender, cid, attempt, deadline
        self.entry, self.accepts_stream = entry, accepts_stream  # accepts_stream: STREAM_REPLY was set (§4.5.1)

    @property
    def cancel(self):
        return self.entry.cancel

    @property
    def upload(self):
        """The streamed request body (an UploadStream), or None when the body came whole."""
        return self.entry.upload


class Streamed:
    """A handler's streamed reply: status, headers, and an iterable of byte strings produced as they come."""
    __slots__ = ("status", "headers", "chunks")

    def __init__(self, status, headers, chunks):
        self.status, self.headers, self.chunks = status, headers, chunks


class Partial:
    """A message being reassembled (§6)."""
    __slots__ = ("buf", "next", "started")

    def __init__(self, length, started):
        self.buf, self.next, self.started = bytearray(length), 0, started


class ReplyStream:
    """The sending side of a streamed reply (§4.5.2): credit granted by the client's CREDITs (§4.5.5)."""

    def __init__(self):
        self.cond = threading.Condition()
        self.credit = 0          # Python ints do not overflow: "at least 64 bits" holds
        self.stopped = False

    def grant(self, n):
        with self.cond:
            self.credit += n
            self.cond.notify_all()

    def stop(self):
        with self.cond:
            self.stopped = True
            self.cond.notify_all()

    def take(self, wanted):
        """Waits for credit and takes up to wanted bytes of it; raises Stopped on CANCEL or a broken stream."""
        with self.cond:
            give_up = time.monotonic() + STREAM_IDLE
            while self.credit <= 0 and not self.stopped:
                if not self.cond.wait(give_up - time.monotonic()) and time.monotonic() >= give_up:
                    raise Idle(f"no CREDIT for {STREAM_IDLE:.0f} s")
            if self.stopped:
                raise Stopped()
            n = min(wanted, self.credit)
            self.credit -= n
            return n


class UploadStream:
    """The receiving side of a streamed request body (§4.5.3): CHUNKs within the credit we granted, in order,
    then END. The handler reads it like a file; we grant what it consumed, half a window at a time."""

    def __init__(self, send_credit):
        self.cond = threading.Condition()
        self.chunks = deque()
        self.next_sequence = 0
        self.unused_credit = UPLOAD_WINDOW  # granted and not yet used by a CHUNK
        self.consumed = 0                   # read by the handler since our last CREDIT
        self.ended = False
        self.stopped = False
        self.send_credit = send_credit

    # -- the receive loop's side: returns why the stream is broken (§7), or None
    def on_chunk(self, sequence, data):
        with self.cond:
            if sequence != self.next_sequence:
                return f"CHUNK sequence {sequence}, expected {self.next_sequence}"
            if len(data) > self.unused_credit:
                return f"a CHUNK of {len(data)} B beyond the credit granted ({self.unused_credit} B left)"
            self.next_sequence += 1
            self.unused_credit -= len(data)
            self.chunks.append(data)
            self.cond.notify_all()
            return None

    def on_end(self, count):
        with self.cond:
            if count != self.next_sequence:
                return f"END says {count} chunks, {self.next_sequence} arrived"
            self.ended = True
            self.cond.notify_all()
            return None

    def stop(self):
        with self.cond:
            self.stopped = True
            self.cond.notify_all()

    # -- the handler's side
    def read(self):
        """The next piece of the body, b"" at its end; raises Stopped when cancelled or broken."""
        with self.cond:
            give_up = time.monotonic() + STREAM_IDLE
            while not self.chunks and not self.ended and not self.stopped:
                if not self.cond.wait(give_up - time.monotonic()) and time.monotonic() >= give_up:
                    raise Idle(f"no CHUNK of the upload for {STREAM_IDLE:.0f} s")
            if self.stopped:
                raise Stopped()
            if not self.chunks:
                return b""
            data = self.chunks.popleft()
            self.consumed += len(data)
            grant = 0
            if self.consumed >= UPLOAD_WINDOW // 2 and not self.ended:
                grant, self.consumed = self.consumed, 0
                self.unused_credit += grant
        if grant:
            self.send_credit(grant)
        return data


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
        magic, version, kind, flags, features, attempt, cid, budget, plen = HEADER.unpack_from(data)
        if magic != MAGIC:
            return self.drop("bad magic")
        if version != VERSION:
            return self.drop(f"unsupported version {version}")
        if kind not in (REQUEST, PING, CANCEL, REQUEST_HEAD, CHUNK, END, CREDIT):
            return self.drop(f"kind {kind} is not accepted by a backend")
        if flags & ~(FLAG_FRAGMENT | FLAG_REPLAY) or (flags & FLAG_FRAGMENT and kind != REQUEST) or cid == 0:
            return self.drop("bad flags or correlation id 0")
        if not sender:
            return self.drop("unbound sender: a reply could not reach it (§1)")
        if not flags & FLAG_FRAGMENT and plen != len(data) - HEADER.size:
            return self.drop("payload_length does not match the datagram")

        if kind in (PING, CANCEL) and plen != 0:
            return self.drop("PING or CANCEL with a payload")

        if kind == PING:  # §4.4: always answered, same correlation_id and attempt; §4.5.1 our features
            self.send(sender, PONG, cid, attempt, b"", features=STREAM_REPLY | STREAM_REQUEST)
            return None
        if kind == CANCEL:  # §4.4: stop the work, never reply; §4.5.6 it also stops a stream either way
            with self.lock:
                entry = self.cache.get((sender, cid))
            if entry is not None and entry.reply is None:
                entry.stop()
            return None
        if kind in (CHUNK, END, CREDIT):
            return self.on_stream_message(sender, kind, cid, attempt, data[HEADER.size:])
        if kind == REQUEST_HEAD:
            return self.on_request(sender, cid, attempt, time.monotonic() + budget / 1000 if budget else None,
                                   data[HEADER.size:], features, upload=True)

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
        return self.on_request(sender, cid, attempt, deadline, payload, features)

    # -- §4.5 stream messages from the client: CHUNK and END of an upload, CREDIT for a reply stream ------
    def on_stream_message(self, sender, kind, cid, attempt, payload):
        with self.lock:
            entry = self.cache.get((sender, cid))
        stream = None
        if entry is not None and entry.reply is None and entry.attempt == attempt:
            stream = entry.upload if kind in (CHUNK, END) else entry.reply_stream
        if stream is None:
            return self.drop(f"kind {kind} for no open stream (late)")  # §7: dropped, no reply
        if kind == CHUNK:
            problem = "a CHUNK without data" if len(payload) <= 4 else \
                stream.on_chunk(U32.unpack_from(payload)[0], payload[4:])
        elif len(payload) != 4:
            problem = f"an END or CREDIT payload of {len(payload)} bytes, not 4"
        elif kind == END:
            problem = stream.on_end(U32.unpack(payload)[0])
        else:
            (credit,) = U32.unpack(payload)
            problem = None if 1 <= credit <= MAX_CREDIT else f"a CREDIT of {credit} bytes (1..{MAX_CREDIT})"
            if problem is None:
                stream.grant(credit)
        if problem is not None:  # §7: the stream is broken; the backend answers ERROR MALFORMED and stops
            self.finish(sender, cid, attempt, entry, (ERROR, error_payload(MALFORMED, f"stream broken: {problem}")))
            entry.stop()
        return None

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
    def on_request(self, sender, cid, attempt, deadline, payload, features, upload=False):
        try:
            request = parse_request(payload)
            if upload and request[3]:
                raise Malformed("a REQUEST_HEAD carries no body (§4.5.3)")
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
                entry = self.cache[key] = Entry(attempt, bool(features & NO_RETRY))
                if upload:
                    entry.upload = UploadStream(lambda n: self.send(sender, CREDIT, cid, attempt, U32.pack(n)))
                self.evict(time.monotonic())
                self.in_flight += 1
                self.stats["executions"] += 1
        if replay is not None:  # the cached reply, with the retry's attempt and the REPLAY flag
            self.send(sender, replay[0], cid, attempt, replay[1], FLAG_REPLAY)
        elif refusal is not None:  # not executed, so not cached: a retry may still run it
            self.send(sender, ERROR, cid, attempt, error_payload(*refusal))
        else:
            if upload:  # §4.5.5: the first CREDIT when we accept the head
                self.send(sender, CREDIT, cid, attempt, U32.pack(UPLOAD_WINDOW))
            call = Call(sender, cid, attempt, deadline, entry, bool(features & STREAM_REPLY))
            threading.Thread(target=self.execute, args=(call, request), daemon=True).start()

    def execute(self, call, request):
        method, target, headers, body = request
        try:
            reply = self.handle(method, target, headers, body, call)
        except Stopped:
            reply = None
        except Idle as e:
            reply = (ERROR, error_payload(DEADLINE_EXCEEDED, str(e)))
        except Exception as e:
            log.exception("handler failed")
            reply = (ERROR, error_payload(INTERNAL, type(e).__name__))
        if isinstance(reply, Streamed):
            reply = self.stream_reply(call, reply)
        with self.lock:
            self.in_flight -= 1
        if call.entry.upload is not None:
            call.entry.upload.stop()  # a reply ends the upload (§4.5.3): later CHUNKs find no stream
        if reply is None:  # cancelled: no reply, and the key is forgotten (a client never retries a cancel)
            with self.lock:
                if call.entry.reply is None:
                    self.cache.pop((call.sender, call.cid), None)
            return
        self.finish(call.sender, call.cid, call.attempt, call.entry, reply)

    def finish(self, sender, cid, attempt, entry, reply, cached=None):
        """Sends the request's one reply, unless one was sent already, and caches it (or `cached`) for retries."""
        key = (sender, cid)
        with self.lock:
            if entry.reply is not None:
                return
            entry.reply, entry.finished_at = cached or reply, time.monotonic()
            if entry.no_retry:
                self.cache.pop(key, None)  # §5: no retry will ask for it
            elif key in self.cache:
                self.cache.move_to_end(key)  # the cache's age counts from the reply
        if reply[0] is not None:
            self.send(sender, reply[0], cid, attempt, reply[1])

    def stream_reply(self, call, streamed):
        """§4.5.2: RESPONSE_HEAD, CHUNKs within the client's credit, END; ERROR if the producer fails."""
        out = call.entry.reply_stream = ReplyStream()
        if call.entry.cancel.is_set():
            return None
        self.send(call.sender, RESPONSE_HEAD, call.cid, call.attempt, response_payload(streamed.status, streamed.headers, b""))
        sequence = 0
        # §4.5.6: a streamed reply is never replayed; a retry after it gets this ERROR with REPLAY.
        not_replayable = (ERROR, error_payload(INTERNAL, "a streamed reply cannot be replayed"))
        try:
            for data in streamed.chunks:
                view = memoryview(data)
                while view:
                    n = out.take(min(len(view), MAX_CHUNK_DATA))
                    self.send(call.sender, CHUNK, call.cid, call.attempt, U32.pack(sequence) + view[:n])
                    sequence, view = sequence + 1, view[n:]
        except Stopped:
            return None
        except Idle as e:  # §4.5.5: a sender that gets no credit may give up with DEADLINE_EXCEEDED
            self.finish(call.sender, call.cid, call.attempt, call.entry, (ERROR, error_payload(DEADLINE_EXCEEDED, str(e))), not_replayable)
            return None
        except Exception as e:
            log.exception("stream producer failed")
            self.finish(call.sender, call.cid, call.attempt, call.entry, (ERROR, error_payload(INTERNAL, type(e).__name__)), not_replayable)
            return None
        self.finish(call.sender, call.cid, call.attempt, call.entry, (END, U32.pack(sequence)), not_replayable)
        return None

    def send(self, address, kind, cid, attempt, payload, flags=0, features=0):
        try:
            for datagram in datagrams(kind, cid, attempt, payload, flags, features):
                self.sock.sendto(datagram, address)
        except OSError as e:  # the client is gone (ENOENT, ECONNREFUSED) or does not read (EAGAIN)
            log.info("could not reply to %r: %s", address, e)

    # -- the routes --------------------------------------------------------------------------------------
    def handle(self, method, target, headers, body, call):
        """Returns (RESPONSE or ERROR, payload), a Streamed reply, or None when cancelled."""
        path = target.split("?", 1)[0]
        if path == "/echo" or path.startswith("/echo/"):
            return self.echo(method, target, headers, body, call)
        if call.upload is not None:  # the other routes take the body whole
            body = collect(iter(call.upload.read, b""))
            if body is None:
                return ERROR, error_payload(TOO_LARGE, f"this route takes at most {MAX_COLLECT} bytes")
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
    def echo(method, target, headers, body, call):
        """ECHO.md: wait x-echo-delay-ms (honouring CANCEL and the deadline), then echo; stream on request."""
        deadline, cancel = call.deadline, call.cancel
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
        query = parse_qs(target.split("?", 1)[1]) if "?" in target else {}

        def setting(name):  # a header, else a query parameter (a browser's EventSource cannot set headers)
            value = header_value(headers, name.encode())
            return value.decode("latin-1") if value is not None else (query.get(name) or [None])[0]

        def number(name, low, high):
            value = setting(name)
            return int(value) if value is not None and value.isdigit() and low <= int(value) <= high else None

        echo_stream = setting("x-echo-stream") == "1"
        chunk_bytes = number("x-echo-stream-chunk-bytes", 1, 1 << 20)
        content_type = header_value(headers, b"content-type") or b"application/octet-stream"
        if call.upload is not None:  # a streamed upload (§4.5.3)
            first = call.upload.read()
            if not first:
                return text(status, f"{method} {target}\n")
            rest = iter(call.upload.read, b"")
            if echo_stream and call.accepts_stream:  # echoed as it arrives: full duplex
                return Streamed(status, [(b"content-type", content_type)], resized(chain([first], rest), chunk_bytes))
            body = collect(chain([first], rest))
            if body is None:
                return ERROR, error_payload(TOO_LARGE, f"The echo collects at most {MAX_COLLECT} bytes into one reply; "
                                                       "with x-echo-stream: 1 it streams a larger body back as it arrives.")
        count = number("x-echo-stream-count", 1, 1_000_000)
        if count is not None or (echo_stream and body):
            interval = (number("x-echo-stream-interval-ms", 0, 60_000) or 0) / 1000
            if count is None:
                size = chunk_bytes or 16 * 1024
                chunks, kind = (body[i:i + size] for i in range(0, len(body), size)), content_type
            else:
                events = b"text/event-stream" in (header_value(headers, b"accept") or b"")
                chunks = (stream_chunk(i, events, chunk_bytes) for i in range(1, count + 1))
                kind = b"text/event-stream" if events else b"text/plain; charset=utf-8"
            chunks = paced(chunks, interval, cancel)
            if call.accepts_stream:
                return Streamed(status, [(b"content-type", kind)], chunks)
            whole = collect(chunks)  # the client takes no streamed reply (§4.5.1): one RESPONSE
            if whole is None:
                return ERROR, error_payload(TOO_LARGE, f"a stream of more than {MAX_COLLECT} bytes needs a client that takes streamed replies")
            return RESPONSE, response_payload(status, [(b"content-type", kind)], whole)
        if body:
            content_type = header_value(headers, b"content-type") or b"application/octet-stream"
            return RESPONSE, response_payload(status, [(b"content-type", content_type)], body)
        return text(status, f"{method} {target}\n")


def stream_chunk(i, events, size):
    """The echo's i-th chunk: "chunk i" and a newline, padded with dots to size bytes; an event with events."""
    if events:
        return f"data: chunk {i}\n\n".encode()
    line = f"chunk {i}".encode()
    if size is None:
        return line + b"\n"
    return (line[:size] + b"." * max(0, size - len(line)))[:size - 1] + b"\n"


def paced(chunks, interval, cancel):
    """Yields the chunks, interval seconds apart; a CANCEL during a wait ends the stream (Stopped)."""
    for i, chunk in enumerate(chunks):
        if i and interval and cancel.wait(interval):
            raise Stopped()
        yield chunk


def resized(pieces, size):
    """Re-cuts pieces to size bytes each (the last may be shorter); passes them through when size is None."""
    if size is None:
        yield from pieces
        return
    pending = bytearray()
    for piece in pieces:
        pending += piece
        while len(pending) >= size:
            yield bytes(pending[:size])
            del pending[:size]
    if pending:
        yield bytes(pending)


def collect(pieces):
    """Joins pieces into one body, or None when they exceed MAX_COLLECT."""
    parts, total = [], 0
    for piece in pieces:
        total += len(piece)
        if total > MAX_COLLECT:
            return None
        parts.append(piece)
    return b"".join(parts)


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
