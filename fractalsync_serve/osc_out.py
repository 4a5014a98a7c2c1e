"""OSC output (python-osc, UDP): ``--osc HOST:PORT``, profiles ``fractalsync`` and ``resolume``.

Every publication becomes one OSC bundle; each beat of the published clock one more bundle.
A bundle's time tag is the NTP time at which its values are meant to take effect: the wall time
of the audio they describe plus ``--latency-ms`` (the receiver's output delay). The published
phase is predicted for that moment, so a receiver that shows values on arrival is late only by
the network and its own delay; one that honours time tags may schedule them.

Profile ``fractalsync`` (the default), every address under ``/fractalsync``:

==========================  ========  ===========================================================
address                     args      content (when)
==========================  ========  ===========================================================
/fractalsync/beat           i i f f   beat count, beat in bar (1-based), bar phase at the beat
                                      ``(beat_in_bar - 1) / beats_per_bar``, BPM (on each beat of
                                      the published clock, in its own bundle timed at the beat)
/fractalsync/downbeat       i         beat count (with ``beat``, when beat in bar is 1)
/fractalsync/phase          f         beat phase in [0, 1), 0 = on the beat (every publication)
/fractalsync/bar_phase      f         position in the bar in [0, 1) (every publication)
/fractalsync/bpm            f         tempo in beats per minute (every publication)
/fractalsync/confidence     f         beat confidence in [0, 1], 0 = no beat (every publication)
/fractalsync/downbeat_prob  f         P(the current beat is a downbeat) (every publication)
/fractalsync/section        i s       section index 0-7 and label: silence, intro, verse,
                                      pre-chorus, chorus, bridge, inst, outro (every publication)
/fractalsync/section_probs  8 x f     probability of each label, same order (every publication)
/fractalsync/hazard         5 x f     P(section change within 1, 2, 4, 8, 16 beats) (every
                                      publication)
/fractalsync/level          f         levels in [0, 1] (every publication), defined in
/fractalsync/bass           f         :mod:`fractalsync_serve.levels`: level/bass/mid/high are
/fractalsync/mid            f         the dB levels mapped from -60..0 dBFS, hits the onset
/fractalsync/high           f         strength, on_beat 1 on the beat falling to 0 a quarter beat
/fractalsync/hits           f         later, times the confidence
/fractalsync/on_beat        f
==========================  ========  ===========================================================

Profile ``resolume`` (Resolume Arena/Avenue's composition tempo controller):

========================================  =====  ============================================
``/composition/tempocontroller/tempo``    f      ``(bpm - 20) / 480`` clipped to [0, 1] (Resolume's
                                                 20-500 BPM range), when it changes by 0.05 BPM or
                                                 more, and at least once a second, once a beat is
                                                 tracked
``/composition/tempocontroller/resync``   i 1    on each downbeat of the published clock
========================================  =====  ============================================

Threading: :meth:`OscOut.sink` (called by the analysis thread) only puts the publication into
a bounded queue; a daemon thread builds and sends the datagrams (non-blocking UDP: a datagram
the kernel refuses is counted in ``send_errors``, never waited for). If the sender falls
``QUEUE_SIZE`` publications behind, further publications are dropped (counted in ``dropped``,
logged at most every 5 s) until it catches up.
"""

from __future__ import annotations

import logging
import queue
import socket
import threading
import time
from typing import TYPE_CHECKING

from .levels import LEVEL_NAMES, levels

if TYPE_CHECKING:  # the CLI imports this module before parsing: keep it light
    from .publisher import Publication

__all__ = ["PROFILES", "QUEUE_SIZE", "OscOut", "parse_target"]

log = logging.getLogger("fractalsync_serve")

PROFILES = ("fractalsync", "resolume")
QUEUE_SIZE = 64
_RESOLUME_BPM = (20.0, 500.0)
_TEMPO_RESEND_S = 1.0
_TEMPO_STEP_BPM = 0.05


def parse_target(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (IPv6 as ``[::1]:PORT``) -> (host, port). ValueError names the problem."""
    host, sep, port = text.rpartition(":")
    if not sep or not host:
        raise ValueError(f"OSC target must look like HOST:PORT, got {text!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        p = int(port)
    except ValueError:
        raise ValueError(f"OSC target {text!r}: port {port!r} is not a number") from None
    if not 1 <= p <= 65535:
        raise ValueError(f"OSC target {text!r}: port must be in 1..65535")
    return host, p


def _message(address: str, *args) -> object:
    from pythonosc.osc_message_builder import OscMessageBuilder  # the [serve] extra

    b = OscMessageBuilder(address)
    for a in args:
        b.add_arg(a)
    return b.build()


def _bundle(timetag: float, messages) -> bytes:
    from pythonosc.osc_bundle_builder import OscBundleBuilder

    b = OscBundleBuilder(timetag)
    for m in messages:
        b.add_content(m)
    return b.build().dgram


class OscOut:
    """Sends publications as OSC bundles to one or more UDP targets (module docstring).

    Parameters
    ----------
    targets : list of (host, port)
        Resolved now: an unknown host raises OSError (``socket.gaierror``).
    profile : "fractalsync" or "resolume"
    """

    def __init__(self, targets, profile: str = "fractalsync") -> None:
        if profile not in PROFILES:
            raise ValueError(f"OSC profile must be one of {', '.join(PROFILES)}, got {profile!r}")
        if not targets:
            raise ValueError("OscOut needs at least one target")
        import pythonosc  # noqa: F401  (the [serve] extra: fail here, not in the sender thread)

        self.profile = profile
        self._socks: list[tuple[socket.socket, tuple]] = []
        self._by_family: dict[int, socket.socket] = {}
        for host, port in targets:
            family, _, _, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0]
            sock = self._by_family.get(family)
            if sock is None:
                sock = socket.socket(family, socket.SOCK_DGRAM)
                sock.setblocking(False)
                self._by_family[family] = sock
            self._socks.append((sock, addr))
        self.targets = [addr for _, addr in self._socks]
        self._queue: queue.Queue = queue.Queue(QUEUE_SIZE)
        self.dropped = 0
        self.send_errors = 0
        self.sent = 0
        self._last_drop_log = -1e9
        self._last_count: int | None = None
        self._tempo_sent = (-1.0, -1e9)  # (bpm, monotonic time)
        self._thread = threading.Thread(target=self._run, name="fractalsync-osc", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ analysis thread

    def sink(self, pub: Publication) -> None:
        """Queue ``pub`` for sending; never waits (a full queue drops it, counted)."""
        try:
            self._queue.put_nowait(pub)
        except queue.Full:
            self.dropped += 1
            now = time.monotonic()
            if now - self._last_drop_log >= 5.0:
                self._last_drop_log = now
                log.warning("OSC sender is behind: %d publications dropped so far", self.dropped)

    def close(self, timeout: float = 2.0) -> None:
        """Send what is queued, stop the thread and close the sockets."""
        try:
            self._queue.put(None, timeout=timeout)
        except queue.Full:
            pass
        self._thread.join(timeout)
        for sock in self._by_family.values():
            sock.close()

    # ------------------------------------------------------------------ sender thread

    def _run(self) -> None:
        while True:
            pub = self._queue.get()
            if pub is None:
                return
            try:
                for dgram in self.datagrams(pub):
                    self._send(dgram)
            except Exception as exc:  # never let one publication kill the sender
                log.error("OSC: could not build the messages of publication %d: %s: %s",
                          pub.seq, type(exc).__name__, exc)

    def _send(self, dgram: bytes) -> None:
        for sock, addr in self._socks:
            try:
                sock.sendto(dgram, addr)
                self.sent += 1
            except OSError:  # buffer full, unreachable port (ICMP): count, never wait
                self.send_errors += 1

    def datagrams(self, pub: Publication) -> list[bytes]:
        """The OSC bundles (bytes) for one publication, in sending order. Called in order for
        consecutive publications (it remembers the last beat count and tempo sent)."""
        clock = pub.clock
        when = pub.wall_time + pub.latency_s
        beat = None
        if clock.source != "none" and self._last_count is not None \
                and clock.beat_count > self._last_count:
            beat = when - clock.phase * clock.spb  # the displayed clock crossed the beat then
        self._last_count = clock.beat_count if clock.source != "none" else None
        if self.profile == "resolume":
            return self._resolume(pub, when, beat)
        out = []
        if beat is not None:
            msgs = [_message("/fractalsync/beat", clock.beat_count, clock.beat_in_bar,
                             (clock.beat_in_bar - 1) / clock.beats_per_bar, clock.bpm)]
            if clock.beat_in_bar == 1:
                msgs.append(_message("/fractalsync/downbeat", clock.beat_count))
            out.append(_bundle(beat, msgs))
        s = pub.state.structure
        msgs = [
            _message("/fractalsync/phase", clock.phase),
            _message("/fractalsync/bar_phase", clock.bar_phase),
            _message("/fractalsync/bpm", clock.bpm),
            _message("/fractalsync/confidence", clock.conf),
            _message("/fractalsync/downbeat_prob", clock.downbeat_prob),
            _message("/fractalsync/section", pub.section_index, s.label),
            _message("/fractalsync/section_probs", *s.section_probs),
            _message("/fractalsync/hazard", *s.hazard_probs),
        ]
        values = levels(pub.state.features, clock.phase, clock.conf)
        msgs += [_message(f"/fractalsync/{n}", v) for n, v in zip(LEVEL_NAMES, values,
                                                                   strict=True)]
        out.append(_bundle(when, msgs))
        return out

    def _resolume(self, pub: Publication, when: float, beat: float | None) -> list[bytes]:
        clock = pub.clock
        out = []
        if beat is not None and clock.beat_in_bar == 1:
            out.append(_bundle(beat, [_message("/composition/tempocontroller/resync", 1)]))
        if clock.source != "none":
            bpm, sent_at = self._tempo_sent
            now = time.monotonic()
            if abs(clock.bpm - bpm) >= _TEMPO_STEP_BPM or now - sent_at >= _TEMPO_RESEND_S:
                lo, hi = _RESOLUME_BPM
                value = min(1.0, max(0.0, (clock.bpm - lo) / (hi - lo)))
                out.append(_bundle(when, [_message("/composition/tempocontroller/tempo",
                                                   value)]))
                self._tempo_sent = (clock.bpm, now)
        return out
