"""The live page of ``fractalsync-serve`` in headless Chromium, against a real server.

A generated song (exact beats) is written to a WAV file and played in real time by a
``fractalsync-serve --audio`` subprocess; headless Chromium (Debian ``chromium``, a system
dependency from scripts/sysdeps.sh) opens the page the server serves at ``/`` and is driven
through the DevTools protocol over a WebSocket (the ``websockets`` package). In the same run a
Python WebSocket client records what the server publishes. The test checks that

* the page connects, receives state messages and runs its predictor (``window.fractalsync``);
* the page's beat count (its own predictor, at ``requestAnimationFrame`` rate) advances in step
  with the server's published ``clock.beat_count`` seen by the Python client at the same moments,
  and the DOM text shows that count;
* keys send commands: the up arrow raises the latency by 10 ms (the Python client sees it in the
  states), space taps and the "Nudge +10 ms" button nudges (the server acknowledges both);
* after the server is restarted on the same port, the page reconnects by itself and counts with
  the new stream (from beat 0 again);
* the page's JavaScript predictor gives the same answers as PhasePredictor (opened as a file,
  without a server);
* a screenshot shows the drawing: the bar clock's hand, the bar-position strip and the five
  hazard bars, located by the layout the page reports and checked pixel by pixel (the PNG is
  decoded by ffmpeg).

Chromium runs with ``--no-sandbox`` only when the test runs as root (Chromium refuses to start
as root with its sandbox).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

websockets_sync = pytest.importorskip("websockets.sync.client",
                                      reason="the [serve] extra (websockets) is not installed")

from fractalsync_models.training.song_generator import generate_song  # noqa: E402

SEED = 2026  # the demo song: 121.5 BPM, 4/4 (held out from training)
SONG_S = 60.0
WINDOW = (1000, 600)
#: The page's drawing colours (index.html COLORS) as RGB.
HAND = (0xFF, 0xC8, 0x3C)
HAZARD_TRACK = (0x2A, 0x3F, 0x66)
BAR_FILL = (0x7D, 0xDC, 0x8A)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(predicate, timeout: float, what: str, step: float = 0.05):
    """Poll ``predicate()`` until it returns a truthy value (returned); fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(step)


# ---------------------------------------------------------------------------- the server

@contextlib.contextmanager
def serve(wav: Path, port: int, log: Path):
    """``fractalsync-serve --audio wav --ws port`` as a subprocess (stderr to ``log``); stopped
    with SIGINT (it must exit by itself)."""
    with open(log, "ab") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "fractalsync_serve.cli", "--audio", str(wav),
             "--ws", str(port)],
            stdout=subprocess.DEVNULL, stderr=err,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        _wait(lambda: proc.poll() is not None or _http_ok(port), 60,
              f"fractalsync-serve to answer on port {port}")
        if proc.poll() is not None:
            pytest.fail(f"fractalsync-serve exited with {proc.returncode}:\n{log.read_text()}")
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                pytest.fail(f"fractalsync-serve did not stop on SIGINT:\n{log.read_text()}")


def _http_ok(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1) as r:
            return r.status == 200
    except OSError:
        return False


class StateRecorder:
    """A Python WebSocket client in a thread: the latest published ``clock.beat_count``."""

    def __init__(self, port: int) -> None:
        self._stack = contextlib.ExitStack()
        self._ws = self._stack.enter_context(websockets_sync.connect(
            f"ws://127.0.0.1:{port}/", open_timeout=10, max_size=2 ** 20))
        self.count: int | None = None
        self.latency_ms: float | None = None
        self.messages = 0
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with contextlib.suppress(Exception):  # ends when the connection closes
            for text in self._ws:
                msg = json.loads(text)
                if msg.get("type") == "state":
                    self.count = msg["clock"]["beat_count"]
                    self.latency_ms = msg["latency_ms"]
                    self.messages += 1

    def close(self) -> None:
        self._stack.close()
        self._thread.join(5)


# ---------------------------------------------------------------------------- the browser

class Chromium:
    """Headless Chromium with one page, driven over the DevTools protocol (flattened sessions
    on the browser's WebSocket)."""

    def __init__(self, profile: Path, log: Path) -> None:
        exe = shutil.which("chromium")
        if exe is None:
            pytest.fail("chromium is required (Debian package chromium: scripts/sysdeps.sh "
                        "installs it)")
        args = [exe, "--headless=new", "--remote-debugging-port=0", "--disable-gpu",
                f"--user-data-dir={profile}", f"--window-size={WINDOW[0]},{WINDOW[1]}",
                "--no-first-run", "--no-default-browser-check", "--hide-scrollbars",
                "--disable-background-timer-throttling", "--disable-renderer-backgrounding"]
        if os.geteuid() == 0:
            args.append("--no-sandbox")  # Chromium's sandbox does not run as root
        self._log = log
        with open(log, "ab") as err:
            self.proc = subprocess.Popen([*args, "about:blank"], stdout=subprocess.DEVNULL,
                                         stderr=err)
        active = profile / "DevToolsActivePort"
        _wait(lambda: self.proc.poll() is not None or
              (active.exists() and len(active.read_text().split()) == 2), 30,
              "Chromium's DevToolsActivePort")
        if self.proc.poll() is not None:
            pytest.fail(f"chromium exited with {self.proc.returncode}:\n{log.read_text()}")
        port, path = active.read_text().split()
        self._stack = contextlib.ExitStack()
        self._ws = self._stack.enter_context(websockets_sync.connect(
            f"ws://127.0.0.1:{port}{path}", open_timeout=10, max_size=64 * 2 ** 20))
        self._id = 0
        self._session: str | None = None

    def call(self, method: str, **params):
        """One DevTools command (on the page's session once `open` attached it); its result."""
        self._id += 1
        request = {"id": self._id, "method": method, "params": params}
        if self._session is not None and not method.startswith("Target."):
            request["sessionId"] = self._session
        self._ws.send(json.dumps(request))
        while True:
            reply = json.loads(self._ws.recv(timeout=30))
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]

    def open(self, url: str) -> None:
        target = self.call("Target.createTarget", url=url)["targetId"]
        self._session = self.call("Target.attachToTarget", targetId=target,
                                  flatten=True)["sessionId"]

    def evaluate(self, expression: str):
        """The JSON value of a JavaScript expression in the page."""
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def state(self) -> dict:
        """The page's ``window.fractalsync`` and the beat count in its DOM text (``text``);
        an empty dict before the page has run its script."""
        return self.evaluate("window.fractalsync ? {...window.fractalsync, "
                             "text: document.getElementById('beat-count').textContent, "
                             "viewport: [innerWidth, innerHeight]} : {}")

    def press(self, key: str, code: str, key_code: int) -> None:
        """A key press (down and up) in the page."""
        for kind in ("keyDown", "keyUp"):
            self.call("Input.dispatchKeyEvent", type=kind, key=key, code=code,
                      windowsVirtualKeyCode=key_code)

    def screenshot(self) -> bytes:
        return base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"])

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._ws.send(json.dumps({"id": 0, "method": "Browser.close"}))
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        with contextlib.suppress(Exception):
            self._stack.close()


def decode_png(png: bytes, path: Path) -> np.ndarray:
    """RGB pixels (H, W, 3) uint8 of a PNG, decoded by ffmpeg."""
    path.write_bytes(png)
    probe = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
                            "stream=width,height", "-of", "csv=p=0", str(path)],
                           capture_output=True, text=True, check=True)
    w, h = map(int, probe.stdout.strip().split(","))
    raw = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-f", "rawvideo",
                          "-pix_fmt", "rgb24", "-"], capture_output=True, check=True).stdout
    return np.frombuffer(raw, np.uint8).reshape(h, w, 3)


def _mask(rgb: np.ndarray, colour: tuple[int, int, int], tol: int = 6) -> np.ndarray:
    return np.all(np.abs(rgb.astype(np.int16) - np.array(colour)) <= tol, axis=-1)


def _crop(rgb: np.ndarray, rect: dict) -> np.ndarray:
    x, y = int(round(rect["x"])), int(round(rect["y"]))
    return rgb[y:y + int(rect["h"]), x:x + int(rect["w"])]


# ---------------------------------------------------------------------------- the test

def _in_step(page: Chromium, rec: StateRecorder, seconds: float) -> list[tuple[int, int]]:
    """(page beat count, server beat count) pairs read at the same moments for ``seconds``."""
    pairs = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        before = rec.count
        s = page.state()
        after = rec.count
        assert s["text"] == str(s["beatCount"]), s  # the DOM shows the page's count
        # the server's count while the page was read: the closer of the two readings
        server = before if abs(s["beatCount"] - before) <= abs(s["beatCount"] - after) else after
        pairs.append((s["beatCount"], server))
        time.sleep(0.25)
    return pairs


def test_page_follows_the_server_and_reconnects(tmp_path):
    song = generate_song(SEED, duration_s=SONG_S)
    wav, _ = song.write(tmp_path)
    port = _free_port()
    server_log, browser_log = tmp_path / "serve.log", tmp_path / "chromium.log"
    browser = Chromium(tmp_path / "profile", browser_log)
    try:
        with serve(wav, port, server_log):
            rec = StateRecorder(port)
            try:
                browser.open(f"http://127.0.0.1:{port}/")
                _wait(lambda: browser.state().get("connected"), 20, "the page to connect")
                # the tracker has locked once the server's published count moves
                first = _wait(lambda: rec.count, 30, "a published beat count > 0")
                _wait(lambda: rec.count >= first + 4, 30, "4 published beats")
                pairs = _in_step(browser, rec, 8.0)
                # keys send commands: up arrow = latency +10 ms (applied by the server to what
                # every client receives), space = tap (acknowledged)
                browser.press("ArrowUp", "ArrowUp", 38)
                _wait(lambda: rec.latency_ms == 10.0, 10, "latency 10 ms in the server's states")
                _wait(lambda: browser.state()["latencyMs"] == 10.0, 10, "the page to show it")
                browser.press(" ", "Space", 32)
                _wait(lambda: browser.state()["lastReply"] == {"type": "ok", "cmd": "tap"}, 10,
                      "the server to acknowledge the tap")
                browser.evaluate("document.getElementById('nudge-later').click()")
                _wait(lambda: browser.state()["lastReply"] == {"type": "ok", "cmd": "nudge"},
                      10, "the server to acknowledge the nudge button")
                state = browser.state()
                png = browser.screenshot()
            finally:
                rec.close()
        page_counts, server_counts = np.array(pairs).T
        diffs = page_counts - server_counts
        # equal but for a beat boundary between the two readings (or a late frame)
        assert np.median(diffs) == 0 and np.all(np.abs(diffs) <= 2), pairs
        assert np.all(np.diff(page_counts) >= 0), pairs  # the page never counts backwards
        assert page_counts[-1] - page_counts[0] >= 8, pairs  # >= 60 BPM over 8 s
        assert state["messages"] > 100 and state["bpm"] > 30 and state["frames"] > 100, state
        assert state["section"] in {"silence", "intro", "verse", "pre-chorus", "chorus",
                                    "bridge", "inst", "outro"}, state

        rgb = decode_png(png, tmp_path / "page.png")
        assert rgb.shape[1::-1] == tuple(state["viewport"])  # one screenshot pixel per CSS px
        layout = state["layout"]
        clock = _crop(rgb, layout["clock"])
        assert _mask(clock, HAND).sum() > 200  # the clock's hand
        hazard = _mask(_crop(rgb, layout["hazard"]), HAZARD_TRACK)
        columns = hazard.any(axis=0)
        runs = np.flatnonzero(np.diff(np.r_[0, columns.astype(np.int8), 0]) == 1)
        assert runs.size == 5, runs  # five hazard bars, drawn side by side
        assert hazard.sum() > 0.2 * hazard.size
        # the bar strip: filled up to the position in the bar (a downbeat fills nothing green)
        strip = _crop(rgb, layout["bar"])
        assert _mask(strip, BAR_FILL).any() or state["beatInBar"] == 1

        # restart the server on the same port: the page reconnects and follows the new stream
        connects = state["connects"]
        _wait(lambda: not browser.state()["connected"], 20, "the page to see the server gone")
        with serve(wav, port, server_log):
            _wait(lambda: browser.state()["connects"] > connects, 30, "the page to reconnect")
            rec = StateRecorder(port)
            try:  # a new stream from beat 0: the page starts over and counts with it
                first = _wait(lambda: rec.count, 30, "a published beat count > 0")
                _wait(lambda: rec.count >= first + 2, 30, "2 published beats")
                pairs = _in_step(browser, rec, 3.0)
            finally:
                rec.close()
        page_counts, server_counts = np.array(pairs).T
        assert np.median(page_counts - server_counts) == 0, pairs
        assert server_counts[0] < state["beatCount"], pairs  # it did start over
    finally:
        browser.close()


def _parity_ops(rng: np.random.Generator) -> list:
    """Updates ("u", state) and queries ("q", t) of a clock whose tempo drifts and whose phase
    jumps by up to +-0.3 beat now and then (never half a beat: no whole-beat catch-up)."""
    ops, t, beats, spb, bpb = [], 0.0, 5.25, 0.5, 4
    for k in range(400):
        t += 0.02
        beats += 0.02 / spb
        if k % 50 == 25:
            beats += rng.uniform(-0.3, 0.3)
        spb = float(np.clip(spb * np.exp(rng.normal(0, 0.01)), 0.3, 0.8))
        n = int(np.floor(beats))
        ops.append(("u", {"t": t, "spb": spb, "phase": beats - n, "count": n,
                          "beatInBar": n % bpb + 1, "beatsPerBar": bpb}))
        for dt in sorted(rng.uniform(0, 0.02, 3)):
            ops.append(("q", t + dt))
    return ops


def test_page_predictor_is_the_phase_predictor_rule(tmp_path):
    """The page's BeatPredictor (JavaScript) gives the same phase, beat count and bar position
    as fractalsync_tracking.phase_predictor.PhasePredictor on the same updates and queries;
    a target whole beats ahead (the clock starting) is counted at once by the page only."""
    from fractalsync_serve.ws_server import STATIC_PAGE
    from fractalsync_tracking.beat_state import BeatClockState
    from fractalsync_tracking.phase_predictor import PhasePredictor

    ops = _parity_ops(np.random.default_rng(7))
    ops_ahead = [("u", {"t": 0.0, "spb": 0.5, "phase": 0.0, "count": 0, "beatInBar": 1,
                        "beatsPerBar": 4}), ("q", 0.1),
                 ("u", {"t": 0.2, "spb": 0.5, "phase": 0.4, "count": 3, "beatInBar": 4,
                        "beatsPerBar": 4}), ("q", 0.2)]
    browser = Chromium(tmp_path / "profile", tmp_path / "chromium.log")
    try:
        browser.open(STATIC_PAGE.as_uri())  # as a file: the page runs, without a server
        _wait(lambda: browser.state().get("frames", 0) > 0, 20, "the page's script to run")
        assert not browser.state()["connected"]
        run = ("(ops => { const p = new BeatPredictor(), out = []; for (const [k, a] of ops) {"
               " if (k === 'u') p.update(a); else { const q = p.query(a);"
               " out.push([q.phase, q.count, q.beatInBar]); } } return out; })")
        page = browser.evaluate(f"{run}({json.dumps(ops)})")
        page_ahead = browser.evaluate(f"{run}({json.dumps(ops_ahead)})")
    finally:
        browser.close()

    def python(sequence):
        pred, out = PhasePredictor(), []
        for kind, a in sequence:
            if kind == "u":
                pred.update(BeatClockState(a["t"], a["spb"], a["phase"], a["count"], 1.0, 0.0,
                                           a["beatInBar"], a["beatsPerBar"]))
            else:
                q = pred.query(a)
                out.append([q.phase, q.beat_count, q.beat_in_bar])
        return out

    expected = python(ops)
    assert len(page) == len(expected) == 1200
    for got, want in zip(page, expected, strict=True):
        assert got[1:] == want[1:] and got[0] == pytest.approx(want[0], abs=1e-9)
    # the target jumps 3.3 beats ahead: the page counts the 3 whole beats (beat 3) and
    # converges on the phase; the Python predictor's count stays 0 (both: bar position 4)
    assert page_ahead[1][1:] == [3, 4] and python(ops_ahead)[1][1:] == [0, 4]
