"""``fractalsync-serve`` as a subprocess: real inputs (file in real time and fast, stdin PCM, an
ALSA capture device), real OSC and WebSocket receivers, clean stops, clear errors."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import sys
import threading

import numpy as np
import pytest
import serve_process
from pythonosc.osc_bundle import OscBundle
from websockets.asyncio.client import connect

from fractalsync_tracking.slow_state import SECTION_LABELS

pytestmark = pytest.mark.usefixtures("beatnet_models_dir")


@pytest.fixture(scope="module")
def song(tmp_path_factory):
    """The demo song (seed 2026, 121.5 BPM, 81 s) as a 44.1 kHz float WAV; (path, Song)."""
    return serve_process.song_file(tmp_path_factory.mktemp("serve_song"))


class OscReceiver:
    """A UDP socket collecting (address, args) from OSC bundles in a thread."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.target = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self.messages: list[tuple[str, list]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                dgram = self.sock.recv(65536)
            except TimeoutError:
                continue
            for msg in OscBundle(dgram):
                self.messages.append((msg.address, list(msg.params)))

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()

    def values(self, address: str) -> list[list]:
        return [args for a, args in self.messages if a == address]


@pytest.fixture
def osc():
    r = OscReceiver()
    yield r
    r.close()


def test_fast_file_to_osc_beats_sections_levels(song, osc):
    path, s = song
    done = serve_process.run(["--audio", str(path), "--fast", "--osc", osc.target])
    assert done.returncode == 0, done.stderr
    assert "stopped:" in done.stdout
    threading.Event().wait(0.5)
    beats = osc.values("/fractalsync/beat")
    counts = [b[0] for b in beats]
    assert counts == sorted(counts) and len(set(counts)) == len(counts)
    # the song has len(s.beats) beats; the tracker locks within the first seconds
    assert 0.85 * len(s.beats) <= len(beats) <= 1.05 * len(s.beats)
    bpm = np.median([b[3] for b in beats[len(beats) // 2:]])
    assert bpm == pytest.approx(s.tempo_bpm, rel=0.03)
    sections = {tuple(v) for v in osc.values("/fractalsync/section")}
    assert all(SECTION_LABELS[i] == name for i, name in sections)
    assert "chorus" in {name for _, name in sections}
    for name in ("level", "bass", "mid", "high", "hits", "on_beat"):
        values = [v[0] for v in osc.values(f"/fractalsync/{name}")]
        assert values and all(0.0 <= v <= 1.0 for v in values) and max(values) > 0.1, name


def test_stdin_pcm_to_its_end(song, osc):
    path, s = song
    import soxr

    audio = soxr.resample(s.audio.astype(np.float32), s.sample_rate, 48000)[: 48000 * 20]
    done = serve_process.run(["--stdin-pcm", "48000", "--osc", osc.target, "--structure",
                              "none"], input=audio.astype("<f4").tobytes(), text=False)
    assert done.returncode == 0, done.stderr
    assert b"20.0 s of audio" in done.stdout
    threading.Event().wait(0.5)
    assert len(osc.values("/fractalsync/beat")) >= 30  # 40 beats in 20 s at 121.5 BPM


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_it_cleanly(song, osc, sig):
    path, _ = song
    served = serve_process.start(["--audio", str(path), "--ws", "0", "--osc", osc.target])

    async def client():
        async with connect(f"ws://127.0.0.1:{served.ws_port}/") as ws:
            for _ in range(5):
                assert json.loads(await ws.recv())["type"] == "state"
            served.proc.send_signal(sig)
            async for _ in ws:  # the server closes the connection
                pass
            return ws.close_code

    code = asyncio.run(asyncio.wait_for(client(), 60))
    status, out, err = served.stop(None)  # one signal only (a second one during exit kills)
    assert status == 0, err
    assert "stopped:" in out and code == 1001
    with socket.socket() as s:  # the port is closed
        assert s.connect_ex(("127.0.0.1", served.ws_port)) != 0


@pytest.mark.parametrize("args, why", [
    ([], "one of the arguments --mic --audio --stdin-pcm --list-devices is required"),
    (["--audio", "x.wav"], "nothing to publish to"),
    (["--mic", "--audio", "x.wav", "--ws", "0"], "not allowed with"),
    (["--mic", "--play", "--ws", "0"], "--play needs --audio"),
    (["--stdin-pcm", "48000", "--fast", "--ws", "0"], "--fast needs --audio"),
    (["--audio", "x.wav", "--fast", "--play", "--ws", "0"], "exclude each other"),
    (["--audio", "x.wav", "--device", "1", "--ws", "0"], "--device needs"),
    (["--stdin-pcm", "12", "--ws", "0"], "8000..384000"),
    (["--audio", "x.wav", "--osc", "nohost"], "HOST:PORT"),
    (["--audio", "x.wav", "--osc", "h:99999"], "1..65535"),
    (["--audio", "x.wav", "--ws", "-1"], "0..65535"),
    (["--audio", "x.wav", "--ws", "0", "--latency-ms", "nan"], "0..2000"),
    (["--audio", "x.wav", "--ws", "0", "--osc-profile", "vdmx"], "invalid choice"),
    (["--audio", "x.wav", "--fast", "--link"], "need real-time input"),
    (["--audio", "x.wav", "--fast", "--midi-clock", "X"], "need real-time input"),
])
def test_bad_arguments_are_usage_errors(args, why):
    done = serve_process.run(args, timeout=60)
    assert done.returncode == 2 and why in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_missing_file_is_one_error_line(tmp_path):
    done = serve_process.run(["--audio", str(tmp_path / "nope.wav"), "--ws", "0"], timeout=120)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fractalsync-serve: error:")
    assert "nope.wav" in lines[0]


def test_port_in_use_is_one_error_line(song):
    path, _ = song
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        done = serve_process.run(["--audio", str(path), "--ws", str(port)], timeout=120)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"fractalsync-serve: error: cannot listen on 127.0.0.1:{port}: ")
    assert "in use" in lines[0]


def _listening_addresses(port: int) -> set[str]:
    """Local addresses (hex, as in /proc/net/tcp*) of the TCP sockets listening on ``port``."""
    out = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                ip, port_hex = fields[1].split(":")
                if fields[3] == "0A" and int(port_hex, 16) == port:
                    out.add(ip)
    return out


@pytest.mark.parametrize("host, expected", [(None, {"0100007F"}), ("0.0.0.0", {"00000000"})])
def test_binds_loopback_unless_host_says_otherwise(song, host, expected):
    path, _ = song
    extra = [] if host is None else ["--host", host]
    served = serve_process.start(["--audio", str(path), "--ws", "0", "--structure", "none",
                                  *extra])
    try:
        assert _listening_addresses(served.ws_port) == expected  # 127.0.0.1 / any address
    finally:
        status, _, err = served.stop()
    assert status == 0, err


def test_microphone_input_on_an_alsa_capture_device(tmp_path, song, osc):
    from alsa_devices import CAPTURE_DEVICE, run_portaudio, write_alsa_config

    _, s = song
    config = write_alsa_config(tmp_path, s.audio[: 44100 * 10].astype(np.float32))
    listing = run_portaudio(
        "from fractalsync_dsp.live_audio import list_devices\n"
        f"print([d.index for d in list_devices() if d.name == {CAPTURE_DEVICE!r}][0])\n",
        config.path)
    assert listing.returncode == 0, listing.stderr
    device = listing.stdout.strip().splitlines()[-1]
    done = serve_process.run(["--mic", "--device", device, "--osc", osc.target, "--seconds",
                              "3", "--structure", "none"], timeout=120,
                             env={**__import__("os").environ,
                                  "ALSA_CONFIG_PATH": str(config.path)})
    assert done.returncode == 0, done.stderr
    assert "microphone (device" in done.stdout and "stopped:" in done.stdout
    threading.Event().wait(0.5)
    assert len(osc.values("/fractalsync/phase")) > 50


def test_without_the_serve_extra_the_error_says_what_to_install(song):
    path, _ = song
    code = ("import sys\n"
            "class Block:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name.split('.')[0] == 'websockets':\n"
            "            raise ImportError(name)\n"
            "sys.meta_path.insert(0, Block())\n"
            "from fractalsync_serve.cli import main\n"
            f"sys.exit(main(['--audio', {str(path)!r}, '--ws', '0']))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 1
    assert "--ws needs the [serve] extra" in done.stderr and "Traceback" not in done.stderr


def test_stdin_pcm_with_nan_inf_huge_values_and_a_torn_last_sample(osc):
    x = np.zeros(48000 * 3, "<f4")
    x[1000:2000] = np.nan
    x[5000] = np.inf
    x[9000:9100] = 3e38
    done = serve_process.run(["--stdin-pcm", "48000", "--osc", osc.target, "--structure",
                              "none"], input=x.tobytes() + b"\x00\x01", text=False,
                             timeout=120)
    assert done.returncode == 0, done.stderr
    assert b"3.0 s of audio" in done.stdout  # the 2 bytes of a torn sample are discarded
    warnings = [w for w in done.stderr.decode().splitlines() if "warning:" in w]
    assert warnings and all("NonFiniteAudioWarning" in w for w in warnings)
    assert "Traceback" not in done.stderr.decode()


def test_play_on_an_alsa_playback_device(tmp_path, song, osc):
    """``--play``: the file goes to the device and, on the same sample clock, to the analysis
    (the ALSA file plugin records what was played)."""
    from alsa_devices import PLAY_DEVICE, run_portaudio, write_alsa_config

    path, s = song
    config = write_alsa_config(tmp_path, np.zeros(1024, np.float32))
    listing = run_portaudio(
        "from fractalsync_dsp.live_audio import list_devices\n"
        f"print([d.index for d in list_devices() if d.name == {PLAY_DEVICE!r}][0])\n",
        config.path)
    assert listing.returncode == 0, listing.stderr
    device = listing.stdout.strip().splitlines()[-1]
    done = serve_process.run(["--audio", str(path), "--play", "--device", device, "--osc",
                              osc.target, "--seconds", "3", "--structure", "none"],
                             timeout=120, env={**__import__("os").environ,
                                               "ALSA_CONFIG_PATH": str(config.path)})
    assert done.returncode == 0, done.stderr
    assert "real time, playing" in done.stdout and "stopped:" in done.stdout
    played = np.fromfile(config.played, dtype="<f4")
    start = int(np.flatnonzero(played)[0])  # PortAudio primes the device with silence first
    assert s.audio[0] != 0 and start <= 44100
    n = 44100 * 2
    assert np.array_equal(played[start:start + n], s.audio[:n].astype(np.float32))
    threading.Event().wait(0.5)
    assert len(osc.values("/fractalsync/phase")) > 50
