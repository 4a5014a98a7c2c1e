"""The WebSocket server in its own process, so that serving many clients never competes with
the analysis for the GIL.

With the server as a thread of the analysis process, 50 clients raised the p99 of the
analysis's ``SlowClock.push`` from 1.1 to 2.8 ms at load 4.6, from 5.8 to 32 ms at load 7-10
(``benchmarks/bench_serve.py``): the event loop's Python work for the clients held the GIL
while the analysis waited to take it back after each native call. :class:`WsProcess` runs
:class:`~fractalsync_serve.ws_server.WsServer` in a child Python (``python -m
fractalsync_serve.ws_process``) and talks to it over a ``SOCK_SEQPACKET`` socket pair (one
datagram per message, message boundaries kept):

* parent -> child: ``P`` + 8-byte sequence number + the state message's JSON (one per
  publication), or ``S`` (stop);
* child -> parent: ``R`` + port (listening), ``E`` + error text (could not listen), ``C`` +
  a command as JSON (tap/nudge/latency with its arrival time), ``T`` + the server's counters
  as JSON (on exit).

The analysis thread's part (:meth:`WsProcess.sink`) is one ``queue.SimpleQueue.put`` (C code:
no system call, the GIL is kept; beyond ``SEND_BACKLOG`` waiting publications they are dropped
and counted). A sender thread of the parent encodes the JSON, sends it with one non-blocking
``send`` (if the child is so far behind that the socket buffer is full, the publication is
dropped and counted: the child never makes anyone wait) and takes the commands that came back
(non-blocking ``recv``), handing them to ``on_command``. Encoding and sending in the analysis
thread itself cost it p50 0.25 ms and p99 3.4 ms per block with 50 clients (the ``send`` wakes
the child, which can preempt the sender on a 2-core machine). The child ignores SIGINT (a
Ctrl-C in the terminal reaches the whole process group; the parent stops it), and exits when
the parent's end of the socket closes.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import queue
import signal
import socket
import struct
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from .commands import Command

if TYPE_CHECKING:  # the child process stays light: no tracking package
    from .publisher import Publication

__all__ = ["SEND_BACKLOG", "WsProcess"]

log = logging.getLogger("fractalsync_serve")

_SEQ = struct.Struct("<q")
_BUFFER_BYTES = 1 << 20
SEND_BACKLOG = 256


class WsProcess:
    """Parent side of the WebSocket server process (see the module docstring).

    Parameters
    ----------
    host, port : the address to listen on (port 0: any free port; :attr:`port` after start)
    on_command : callable(Command, float)
        Called by the analysis thread (inside :meth:`sink`) for each tap, nudge or latency
        command, with its arrival time (``time.time()`` in the child).
    page : Path or None
        The page served at ``/`` (default: the package's ``static/index.html``).
    quiet : bool
        The child logs warnings only (client connections are logged otherwise).
    """

    def __init__(self, host: str, port: int, on_command: Callable[[Command, float], None],
                 page: Path | None = None, quiet: bool = False) -> None:
        self.host, self.port = host, int(port)
        self.quiet = bool(quiet)
        self._on_command = on_command
        self.page = page
        self._proc: subprocess.Popen | None = None
        self._sock: socket.socket | None = None
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self.backlog_dropped = 0  # analysis thread only
        self.dropped = 0  # sender thread only
        self.counters: dict = {}

    def start(self, timeout: float = 30.0) -> None:
        """Start the child and wait until it listens. OSError if it cannot (the child's
        message, e.g. the port is in use); TimeoutError if it does not answer in time."""
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        for s in (parent, child):
            s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _BUFFER_BYTES)
        args = [sys.executable, "-m", "fractalsync_serve.ws_process", "--fd",
                str(child.fileno()), "--host", self.host, "--port", str(self.port)]
        if self.page is not None:
            args += ["--page", str(self.page)]
        if self.quiet:
            args.append("--quiet")
        try:
            self._proc = subprocess.Popen(args, pass_fds=[child.fileno()],
                                          stdin=subprocess.DEVNULL)
        finally:
            child.close()
        self._sock = parent
        parent.settimeout(timeout)
        try:
            first = parent.recv(65536)
        except TimeoutError:
            self.stop()
            raise TimeoutError(f"the WebSocket server process did not start in {timeout} s") \
                from None
        if first[:1] == b"R":
            self.port = int(first[1:])
            parent.setblocking(False)
            self._thread = threading.Thread(target=self._send_loop, daemon=True,
                                            name="fractalsync-ws-sender")
            self._thread.start()
            return
        self.stop()
        raise OSError(first[1:].decode() if first[:1] == b"E" else
                      "the WebSocket server process exited before it listened")

    def sink(self, pub: Publication) -> None:
        """Queue ``pub`` for the sender thread; never waits (module docstring)."""
        if self._sock is None:
            return
        if self._queue.qsize() >= SEND_BACKLOG:
            self.backlog_dropped += 1
            return
        self._queue.put(pub)

    def _send_loop(self) -> None:
        while True:
            pub = self._queue.get()
            sock = self._sock
            if pub is None:
                return
            if sock is None:
                continue
            try:
                sock.send(b"P" + _SEQ.pack(pub.seq) + pub.to_json().encode())
            except BlockingIOError:
                self.dropped += 1
            except OSError:  # the child is gone: the analysis goes on, the outputs without it
                self._lost()
                continue
            self._take_commands()

    def _take_commands(self) -> None:
        while True:
            try:
                data = self._sock.recv(65536)
            except BlockingIOError:
                return
            except OSError:
                self._lost()
                return
            if not data:
                self._lost()
                return
            if data[:1] == b"C":
                msg = json.loads(data[1:])
                self._on_command(Command(msg["type"], msg["value"]), msg["t"])
            elif data[:1] == b"T":
                self.counters = json.loads(data[1:])

    def _lost(self) -> None:
        log.error("the WebSocket server process ended; WebSocket output stopped")
        self._sock.close()
        self._sock = None

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the sender thread, ask the child to close its connections (1001) and exit;
        wait for it."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout)
        sock, self._sock = self._sock, None
        if sock is not None:
            try:
                sock.setblocking(True)
                sock.settimeout(timeout)
                sock.send(b"S")
                while True:  # read to the end: its counters come last
                    data = sock.recv(65536)
                    if not data:
                        break
                    if data[:1] == b"T":
                        self.counters = json.loads(data[1:])
            except OSError:
                pass
            finally:
                sock.close()
        if self._proc is not None:
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()


# ---------------------------------------------------------------------------- the child


def _child(argv=None) -> int:
    p = argparse.ArgumentParser(prog="fractalsync_serve.ws_process")
    p.add_argument("--fd", type=int, required=True)
    p.add_argument("--host", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--page", type=Path)
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("fractalsync-serve: %(message)s"))
    log.handlers[:] = [handler]
    log.setLevel(logging.WARNING if args.quiet else logging.INFO)
    log.propagate = False
    logging.getLogger("fractalsync_serve.websockets").setLevel(logging.ERROR)

    from .ws_server import STATIC_PAGE, WsServer

    sock = socket.socket(fileno=args.fd)

    def on_command(cmd: Command, t: float) -> None:
        try:
            sock.send(b"C" + json.dumps({"type": cmd.type, "value": cmd.value, "t": t})
                      .encode())
        except OSError:
            pass

    server = WsServer(args.host, args.port, on_command, args.page or STATIC_PAGE)
    try:
        server.start()
    except OSError as exc:
        sock.send(b"E" + str(exc).encode())
        return 1
    sock.send(b"R" + str(server.port).encode())
    try:
        while True:
            data = sock.recv(65536)  # a state message is 1-2 kB
            if not data or data[:1] == b"S":
                break
            if data[:1] == b"P":
                server.send_state(_SEQ.unpack_from(data, 1)[0], data[9:].decode())
    finally:
        server.stop()
        counters = {"connections": server.connections, "clients_dropped":
                    server.clients_dropped, "backlog_dropped": server.backlog_dropped}
        try:
            sock.send(b"T" + json.dumps(counters).encode())
        except OSError:
            pass
        sock.close()
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(_child())
