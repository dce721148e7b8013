#!/usr/bin/env python3
"""A classic Unix datagram echo daemon that knows nothing about the gateway.

It binds a SOCK_DGRAM socket to --socket, and for every datagram it receives it sends one
datagram back to the sender's address: the same bytes with ASCII a-z upper-cased (every other
byte unchanged). That is all a backend in the gateway's *raw* mode has to do: the gateway sends
the HTTP request body as one datagram and returns the first datagram it gets back as the 200 body.

    python3 echo_server.py --socket /run/gateway/raw-echo.sock [--mode 660]
    python3 echo_server.py --socket /run/gateway/raw-echo.sock --healthcheck

--healthcheck sends one datagram to the running daemon from a socket bound to an abstract address and exits
0 if the upper-cased echo comes back within 2 s, else 1 (a container healthcheck without any other tool;
run it in the daemon's network namespace, i.e. its container).

Standard library only (socketserver). SIGTERM and SIGINT stop it cleanly and remove the socket file.
"""

import argparse
import os
import signal
import socket
import socketserver
import stat
import sys

# The gateway never sends a raw datagram larger than this (docs/protocol.md, MaxDatagram).
MAX_DATAGRAM = 212_960


class UpperEchoHandler(socketserver.BaseRequestHandler):
    def handle(self):
        data, sock = self.request
        if not self.client_address:
            return  # unbound sender: there is no address to reply to
        try:
            sock.sendto(data.upper(), self.client_address)
        except OSError as e:  # the sender went away: keep serving the others
            print(f"sendto {self.client_address!r}: {e.strerror}", file=sys.stderr, flush=True)


class EchoServer(socketserver.UnixDatagramServer):
    max_packet_size = MAX_DATAGRAM


def remove_stale(path):
    """A socket file left behind by a killed predecessor would make bind() fail."""
    try:
        if stat.S_ISSOCK(os.lstat(path).st_mode):
            os.unlink(path)
    except FileNotFoundError:
        pass


def healthcheck(path, timeout=2.0):
    """Exit status 0 when the daemon at path echoes a probe datagram (upper-cased) within timeout seconds."""
    probe = b"healthcheck %d" % os.getpid()
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(b"\0gw-raw-healthcheck-%d" % os.getpid())  # abstract: nothing to write, nothing to unlink
        sock.settimeout(timeout)
        try:
            sock.sendto(probe, path)
            reply = sock.recv(MAX_DATAGRAM)
        except OSError as e:  # absent, refused, no permission, timed out
            print(f"unix:{path}: {e.strerror or e}", file=sys.stderr, flush=True)
            return 1
    if reply != probe.upper():
        print(f"unix:{path}: unexpected reply {reply[:60]!r}", file=sys.stderr, flush=True)
        return 1
    print(f"unix:{path}: echo ok", flush=True)
    return 0


def stop(signum, frame):
    raise SystemExit(0)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--socket", required=True, help="path of the datagram socket to bind")
    parser.add_argument("--mode", default="660",
                        help="octal file mode of the socket file (default 660: owner and group)")
    parser.add_argument("--healthcheck", action="store_true",
                        help="probe the daemon already running on --socket instead of serving; exit 0 if it echoes")
    args = parser.parse_args()
    if args.healthcheck:
        sys.exit(healthcheck(args.socket))

    # PID 1 in a container ignores SIGTERM unless the program handles it.
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    remove_stale(args.socket)
    # bind() creates the socket file with mode 0777 & ~umask: set the umask around it so the
    # file never exists with a wider mode than asked for.
    old_umask = os.umask(0o777 & ~int(args.mode, 8))
    try:
        server = EchoServer(args.socket, UpperEchoHandler)
    finally:
        os.umask(old_umask)
    try:
        print(f"raw echo listening on {args.socket}", file=sys.stderr, flush=True)
        server.serve_forever()
    finally:
        server.server_close()
        remove_stale(args.socket)


if __name__ == "__main__":
    main()
