"""WebSocket output (websockets, asyncio): state messages out, commands in, one page at ``/``.

``--ws PORT`` starts :class:`WsServer` on ``HOST:PORT`` (127.0.0.1 unless ``--host``), in a
thread running an asyncio event loop, inside a child process of its own
(:mod:`fractalsync_serve.ws_process`: the clients' Python work never competes with the
analysis for the GIL):

* A WebSocket client connecting on any path receives every publication as one JSON text
  message (:meth:`Publication.to_message <fractalsync_serve.publisher.Publication.to_message>`:
  the SlowState's ``state_bus`` fields ``beat``, ``structure``, ``features`` plus ``type``,
  ``seq``, ``stream_time``, ``wall_time``, ``latency_ms``, ``section``, ``clock`` and
  ``events``), or every N-th after ``{"type": "subscribe", "every": N}``. Commands are in
  :mod:`fractalsync_serve.commands` (tap, nudge, latency, subscribe, ping; validated, rate
  limited; a bad message gets an error reply and nothing else).
* A plain HTTP ``GET /`` (no WebSocket upgrade) returns ``fractalsync_serve/static/index.html``
  (through websockets' ``process_request`` hook); any other plain HTTP path is a 404.

Never blocking the analysis: :meth:`WsServer.sink` only appends the publication to a bounded
``deque`` (``LOOP_BACKLOG``; when the loop is that far behind the oldest are discarded, and
counted in ``backlog_dropped``): no lock, no system call, so the analysis thread never gives up
the GIL there. The event loop takes them every ``POLL_S`` (2 ms; a ``call_soon_threadsafe``
per publication would write to the loop's wake-up pipe from the analysis thread, and that
system call let the busy loop thread take the GIL for up to 5 ms: publish p99 8.6 ms with 50
clients, measured). The loop encodes the JSON once and puts it into each client's bounded
queue (``CLIENT_QUEUE`` messages); a per-client task sends from it. A client that does not
read fills its queue (its socket's send buffer is kept small, ``SEND_BUFFER_BYTES``, so that
this happens within seconds): it is dropped (closed with code 1008, "too slow") and logged;
the others are not affected. A client that reconnects simply starts receiving again.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from .commands import MAX_MESSAGE_BYTES, Command, CommandError, RateLimiter, parse_command

if TYPE_CHECKING:  # the child process stays light: no tracking package
    from .publisher import Publication

__all__ = ["CLIENT_QUEUE", "LOOP_BACKLOG", "POLL_S", "SEND_BUFFER_BYTES", "STATIC_PAGE",
           "WsServer"]

log = logging.getLogger("fractalsync_serve")

STATIC_PAGE = Path(__file__).with_name("static") / "index.html"
CLIENT_QUEUE = 128  # messages: 2.7 s at 47 per second
LOOP_BACKLOG = 256
POLL_S = 0.002
SEND_BUFFER_BYTES = 16384


class _Client:
    def __init__(self, ws, name: str) -> None:
        self.ws = ws
        self.name = name
        self.every = 1
        self.count = 0
        self.queue: asyncio.Queue[str] = asyncio.Queue(CLIENT_QUEUE)
        self.limiter = RateLimiter()
        self.dropped = False


class WsServer:
    """The WebSocket/HTTP server (see the module docstring).

    Parameters
    ----------
    host : str
        Address to bind (``127.0.0.1``: this machine only).
    port : int
        TCP port (0: any free port; see :attr:`port` after :meth:`start`).
    on_command : callable(Command, float)
        Called in the server thread for each valid tap, nudge or latency command with the
        command and its arrival time (``time.time()``); must not block (the engine queues it).
    page : Path
        The page served at ``/``.
    """

    def __init__(self, host: str, port: int, on_command: Callable[[Command, float], None],
                 page: Path = STATIC_PAGE) -> None:
        self.host, self.port = host, int(port)
        self._on_command = on_command
        self.page = Path(page)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._clients: set[_Client] = set()
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._inbox: deque[tuple[int, str]] = deque(maxlen=LOOP_BACKLOG)
        self._last_seq: int | None = None
        self.backlog_dropped = 0
        self.clients_dropped = 0
        self.connections = 0

    # ------------------------------------------------------------------ control (main thread)

    def start(self, timeout: float = 10.0) -> None:
        """Bind and serve in a daemon thread; returns once listening. OSError if the port
        cannot be bound (in use, no permission), with the address in the message."""
        self._thread = threading.Thread(target=self._run, name="fractalsync-ws", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError(f"the WebSocket server did not start within {timeout} s")
        if self._error is not None:
            raise self._error

    def stop(self, timeout: float = 5.0) -> None:
        """Close every connection (code 1001) and the listening socket; wait for the thread."""
        if self._loop is not None and self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def client_count(self) -> int:
        return len(self._clients)

    # ------------------------------------------------------------------ analysis thread

    def sink(self, pub: Publication) -> None:
        """Hand ``pub`` to the event loop (encoded here: :meth:`send_state`)."""
        self.send_state(pub.seq, pub.to_json())

    def send_state(self, seq: int, text: str) -> None:
        """Hand state message ``seq`` (its JSON text) to the event loop: one
        ``deque.append``, never waits (module docstring)."""
        self._inbox.append((seq, text))

    # ------------------------------------------------------------------ event loop

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(self._main(loop))
        except BaseException as exc:  # reported by start() if it happened while binding
            if not self._ready.is_set():
                self._error = exc
                self._ready.set()
            else:
                log.error("WebSocket server stopped: %s: %s", type(exc).__name__, exc)
        finally:
            loop.close()

    async def _main(self, loop) -> None:
        from websockets.asyncio.server import serve

        self._stop = asyncio.Event()
        try:
            server = await serve(self._handler, self.host, self.port,
                                 process_request=self._http, compression=None,
                                 max_size=MAX_MESSAGE_BYTES, max_queue=16,
                                 ping_interval=20, ping_timeout=20, close_timeout=2,
                                 logger=logging.getLogger("fractalsync_serve.websockets"))
        except OSError as exc:
            why = os.strerror(exc.errno) if exc.errno and exc.errno > 0 else str(exc)
            raise OSError(f"cannot listen on {self.host}:{self.port}: {why}") from None
        self.port = server.sockets[0].getsockname()[1]
        self._loop = loop
        self._ready.set()
        async with server:
            while not self._stop.is_set():
                self._drain_inbox()
                await asyncio.sleep(POLL_S)
            server.close()  # closes the connections with 1001 (going away)
            await server.wait_closed()

    def _drain_inbox(self) -> None:
        inbox = self._inbox
        while inbox:
            seq, text = inbox.popleft()
            if self._last_seq is not None and seq > self._last_seq + 1:
                self.backlog_dropped += seq - self._last_seq - 1
            self._last_seq = seq
            self._fanout(text)

    def _http(self, connection, request):
        """process_request: the page at ``/`` for plain HTTP, None (go on) for WebSocket."""
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return None
        path = request.path.split("?", 1)[0]
        if path not in ("/", "/index.html"):
            return connection.respond(404, "not found: this server has one page, at /\n")
        try:
            body = self.page.read_bytes()
        except OSError:
            return connection.respond(404, "no page installed (fractalsync_serve/static/"
                                           "index.html is missing)\n")
        response = connection.respond(200, "")
        response.body = body
        del response.headers["Content-Type"]
        del response.headers["Content-Length"]
        response.headers["Content-Type"] = "text/html; charset=utf-8"
        response.headers["Content-Length"] = str(len(body))
        response.headers["Cache-Control"] = "no-store"
        return response

    def _fanout(self, text: str) -> None:
        for client in list(self._clients):
            client.count += 1
            if client.count % client.every:
                continue
            try:
                client.queue.put_nowait(text)
            except asyncio.QueueFull:
                self._drop(client, f"{CLIENT_QUEUE} messages queued: it does not read fast "
                                   "enough", "too slow")

    def _drop(self, client: _Client, why: str, reason: str) -> asyncio.Future | None:
        """Stop serving ``client``, log why, close its connection with 1008 (``reason``);
        the closing task (None if it was already dropped)."""
        if client.dropped:
            return None
        client.dropped = True
        self._clients.discard(client)
        self.clients_dropped += 1
        log.warning("WebSocket client %s dropped: %s", client.name, why)
        return asyncio.ensure_future(client.ws.close(1008, reason))

    async def _handler(self, ws) -> None:
        sock = ws.transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER_BYTES)
        addr = ws.remote_address
        client = _Client(ws, f"{addr[0]}:{addr[1]}" if addr else "?")
        self.connections += 1
        self._clients.add(client)
        log.info("WebSocket client %s connected (%d clients)", client.name, len(self._clients))
        sender = asyncio.ensure_future(self._send_loop(client))
        try:
            async for message in ws:
                reply = self._command(client, message)
                if reply is not None:
                    await ws.send(json.dumps(reply))
                if client.limiter.flooding:
                    closing = self._drop(client, "flooding (rate limit exceeded)", "flooding")
                    if closing is not None:
                        await closing
                    break
        except Exception as exc:  # a broken connection ends this client only
            log.debug("WebSocket client %s: %s", client.name, type(exc).__name__)
        finally:
            sender.cancel()
            self._clients.discard(client)
            log.info("WebSocket client %s disconnected (%d clients)", client.name,
                     len(self._clients))

    async def _send_loop(self, client: _Client) -> None:
        try:
            while True:
                await client.ws.send(await client.queue.get())
        except asyncio.CancelledError:
            raise
        except Exception:  # the connection closed: the handler ends too
            return

    def _command(self, client: _Client, message) -> dict | None:
        """Validate and execute one client message; the reply to send (None: none)."""
        if not client.limiter.allow(time.monotonic()):
            return {"type": "error", "error": f"rate limit: at most {client.limiter.rate:g} "
                                              "messages per second"}
        try:
            cmd = parse_command(message)
        except CommandError as exc:
            return {"type": "error", "error": str(exc)}
        if cmd.type == "ping":
            return {"type": "pong"}
        if cmd.type == "subscribe":
            client.every = int(cmd.value)
        else:
            self._on_command(cmd, time.time())
        return {"type": "ok", "cmd": cmd.type}
