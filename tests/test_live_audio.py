"""Live audio through real PortAudio streams on ALSA devices the tests configure.

Every PortAudio part runs in a child Python (`alsa_devices.run_portaudio`) whose
``ALSA_CONFIG_PATH`` names a configuration written by `alsa_devices.write_alsa_config`: a
playback PCM that writes what it plays to a file, a capture PCM that reads a known file, a
playback-only PCM and a null default. The child prints one JSON line; the test checks that
nothing else reached stdout or stderr (no ALSA or JACK noise) and compares samples.

The null PCM has no clock, so these streams run as fast as the callbacks return: thousands of
callbacks per second, a hard test of the callback's own cost and of the ring's drop
accounting. Timings are measured and printed (``pytest -s``), and only the generous bound of
the task is asserted (< 5 ms per callback).
"""

from __future__ import annotations

import ctypes
import json
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from alsa_devices import (
    CAPTURE_DEVICE,
    PLAY_DEVICE,
    PLAY_ONLY_DEVICE,
    run_portaudio,
    write_alsa_config,
    write_no_device_config,
)

from fractalsync_dsp.block_ring import BlockRing
from fractalsync_dsp.live_audio import (
    AudioDeviceError,
    DeviceInfo,
    FilePlayback,
    MicInput,
    _quiet_native_output,
    format_devices,
)

CAPTURE_SAMPLES = 48000

# Shared head of every child script: imports and a device-name -> index map.
_PRELUDE = """
import json, sys, threading, time
import numpy as np
from fractalsync_dsp.block_ring import BlockRing
from fractalsync_dsp.live_audio import (AudioDeviceError, FilePlayback, MicInput,
                                        format_devices, list_devices)
INDEX = {d.name: d.index for d in list_devices()}
def emit(result):
    print(json.dumps(result))
"""


def _capture_signal() -> np.ndarray:
    """What the capture device delivers first: distinct float32 values, none zero."""
    x = np.random.default_rng(7).uniform(0.05, 0.95, CAPTURE_SAMPLES)
    sign = np.where(np.arange(CAPTURE_SAMPLES) % 3 == 0, -1.0, 1.0)
    return (x * sign).astype(np.float32)


@pytest.fixture
def portaudio():
    """Skip without PyAudio, the [live] extra: the test drives real PortAudio streams."""
    pytest.importorskip("pyaudio")


@pytest.fixture
def alsa(tmp_path, portaudio):
    """The test devices' ALSA configuration (see tests/alsa_devices.py)."""
    return write_alsa_config(tmp_path, _capture_signal())


def _child(script: str, config_path, helpers: str = "", timeout: float = 60.0) -> dict:
    """Run a child script (after `_PRELUDE` and `helpers`); its one JSON line, checked for
    silence."""
    proc = run_portaudio(_PRELUDE + helpers + textwrap.dedent(script), config_path,
                         timeout=timeout)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "", f"native noise on stderr: {proc.stderr!r}"
    lines = proc.stdout.splitlines()
    assert len(lines) == 1, f"stdout must hold only the result: {proc.stdout!r}"
    return json.loads(lines[0])


# -- (a) the device list ----------------------------------------------------------------------


def test_list_devices_sees_the_configured_pcms(alsa):
    result = _child("""
        from dataclasses import asdict
        devices = list_devices()
        emit({"devices": [asdict(d) for d in devices], "text": format_devices(devices)})
    """, alsa.path)
    by_name = {d["name"]: d for d in result["devices"]}
    assert set(by_name) == {PLAY_DEVICE, CAPTURE_DEVICE, PLAY_ONLY_DEVICE, "default"}
    assert [d["index"] for d in result["devices"]] == list(range(4))
    assert all(d["host_api"] == "ALSA" for d in result["devices"])
    assert by_name[PLAY_ONLY_DEVICE]["max_input_channels"] == 0
    assert by_name[PLAY_ONLY_DEVICE]["max_output_channels"] >= 2
    assert by_name[CAPTURE_DEVICE]["max_input_channels"] >= 2
    assert by_name[PLAY_DEVICE]["max_output_channels"] >= 2
    assert by_name["default"]["is_default_input"] and by_name["default"]["is_default_output"]
    assert sum(d["is_default_input"] for d in result["devices"]) == 1
    lines = result["text"].splitlines()
    assert len(lines) == 4 + 2
    for d in result["devices"]:
        (line,) = [x for x in lines if x.endswith(f"{d['name']} [ALSA]")]
        assert line.split()[:4] == [str(d["index"]), str(d["max_input_channels"]),
                                    str(d["max_output_channels"]),
                                    f"{d['default_sample_rate']:.0f}"]


# -- (b) microphone input -----------------------------------------------------------------------


def test_mic_input_delivers_the_capture_file_into_the_ring(alsa, tmp_path):
    results = _child(f"""
        results = {{}}
        for channels in (1, 2):  # mono, then the same file as interleaved stereo
            frames = {CAPTURE_SAMPLES} // channels
            ring = BlockRing(frames, channels=channels)
            with MicInput(ring, device=INDEX["{CAPTURE_DEVICE}"], channels=channels) as mic:
                deadline = time.monotonic() + 30
                while ring.written_total < frames and time.monotonic() < deadline:
                    time.sleep(0.001)
            out = np.zeros((frames, channels), np.float32)
            got = ring.read(out)
            np.save(f"{tmp_path}/mic{{channels}}.npy", out[:got])
            results[channels] = {{
                "rate": mic.sample_rate, "delivered": mic.samples_delivered,
                "written": ring.written_total, "dropped": mic.dropped_samples,
                "stream_time": mic.stream_time, "overflows": mic.input_overflows,
                "max_callback": mic.max_callback_seconds, "latency": mic.latency,
                "active_after_close": mic.active}}
        emit(results)
    """, alsa.path)
    for channels in (1, 2):
        result = results[str(channels)]
        print(f"\nMicInput x{channels}: {result}")
        frames = CAPTURE_SAMPLES // channels
        captured = np.load(tmp_path / f"mic{channels}.npy")
        expected = _capture_signal().reshape(frames, channels)
        np.testing.assert_array_equal(captured, expected)  # float32 in, float32 out: exact
        assert result["rate"] == 44100  # sample_rate=None: the null PCM's default rate
        assert result["written"] == frames
        assert result["delivered"] >= frames
        assert result["delivered"] == result["written"] + result["dropped"]
        assert result["stream_time"] == result["delivered"] / 44100
        assert result["latency"] > 0
        assert not result["active_after_close"]


# -- (c) file playback on the shared sample clock -------------------------------------------------


def _played(alsa, channels: int) -> np.ndarray:
    """What the playback PCM wrote to its file, as (n, channels) float32."""
    return np.fromfile(alsa.played, "<f4").reshape(-1, channels)


def _split_prefill(played: np.ndarray, n: int) -> int:
    """Rows of silence PortAudio primed the device with before the first played block."""
    lead = int(np.flatnonzero(np.abs(played).sum(axis=1))[0])
    assert not played[:lead].any() and not played[lead + n:].any()
    return lead


def test_file_playback_plays_the_file_and_feeds_the_same_samples_to_the_ring(alsa, tmp_path):
    rate, n = 48000, 96000
    audio = np.random.default_rng(3).uniform(-0.9, 0.9, (n, 2)).astype(np.float32)
    audio[0] = (0.5, -0.5)
    np.save(tmp_path / "audio.npy", audio)
    result = _child(f"""
        audio = np.load("{tmp_path / 'audio.npy'}")
        ring = BlockRing({n}, channels=2)
        fp = FilePlayback(audio, {rate}, ring, device=INDEX["{PLAY_DEVICE}"])
        assert fp.samples_played == 0 and fp.playback_time() == 0.0 and not fp.finished
        seen = []  # (samples_played, ring.written_total, playback_time) while it plays
        fp.start()
        while not fp.finished:
            played = fp.samples_played  # before the ring's counter: the callback writes the
            seen.append((played, ring.written_total, fp.playback_time()))  # ring first
            time.sleep(0)
        out = np.zeros(({n}, 2), np.float32)
        got = ring.read(out)
        np.save("{tmp_path / 'ring.npy'}", out[:got])
        emit({{"played": fp.samples_played, "finished": fp.finished, "seen": seen,
              "time": fp.playback_time(), "dropped": ring.dropped_samples,
              "latency": fp.output_latency, "max_callback": fp.max_callback_seconds}})
        fp.close()
    """, alsa.path)
    seen = np.array(result.pop("seen"), dtype=float).reshape(-1, 3)
    print(f"\nFilePlayback: {result}, {len(seen)} observations while playing")
    assert result["played"] == n and result["finished"]
    assert result["time"] == n / rate  # clipped at the samples handed over
    assert result["dropped"] == 0
    np.testing.assert_array_equal(np.load(tmp_path / "ring.npy"), audio)
    played = _played(alsa, 2)
    lead = _split_prefill(played, n)
    np.testing.assert_array_equal(played[lead:lead + n], audio)
    print(f"PortAudio primed the ALSA buffer with {lead} silent samples")
    # Shared clock at every observation: the ring had every sample handed to the device, and
    # the heard position never ran ahead of what was handed over.
    assert np.all(seen[:, 1] >= seen[:, 0])
    assert np.all(seen[:, 2] <= seen[:, 0] / rate + 1e-12)
    assert np.all(np.diff(seen[:, 0]) >= 0)


def test_file_playback_without_a_device_paces_the_same_blocks_into_the_ring():
    rate, n, block = 8000, 4000, 256
    audio = np.random.default_rng(5).uniform(-1, 1, n).astype(np.float32)
    ring = BlockRing(n)
    fp = FilePlayback(audio, rate, ring, block_samples=block, play=False)
    assert fp.device is None and fp.output_latency == 0.0
    seen = []
    with fp:
        while not fp.finished:
            now = time.monotonic()
            seen.append((fp.samples_played, fp.playback_time(now), now))
            time.sleep(0.003)
    assert fp.samples_played == n and fp.finished and not fp.active
    out = np.zeros(n, np.float32)
    assert ring.read(out) == n
    np.testing.assert_array_equal(out, audio)
    assert fp.playback_time() == n / rate
    seen = np.array(seen)
    assert np.all(np.diff(seen[:, 0]) >= 0)
    assert np.all(np.diff(seen[:, 1]) >= 0)  # the interpolated clock never steps back
    assert np.all(seen[:, 1] <= seen[:, 0] / rate)
    assert seen[:, 0].min() < n  # it was observed mid-file: the blocks came paced


def test_file_playback_without_a_device_resumes_where_it_stopped():
    rate, n, block = 8000, 1600, 160
    audio = np.linspace(-1, 1, n, dtype=np.float32).reshape(-1, 2)  # 800 stereo samples
    ring = BlockRing(n, channels=2)
    fp = FilePlayback(audio, rate, ring, block_samples=block, play=False)
    fp.start()
    while fp.samples_played < 2 * block:
        time.sleep(0.001)
    fp.stop()
    stopped_at = fp.samples_played
    assert not fp.active and not fp.finished and stopped_at < len(audio)
    time.sleep(0.05)
    assert fp.samples_played == stopped_at  # stop means stop
    fp.start()
    assert fp.wait(timeout=10)
    out = np.zeros((n, 2), np.float32)
    assert ring.read(out) == len(audio)
    np.testing.assert_array_equal(out[:len(audio)], audio)
    fp.close()
    with pytest.raises(RuntimeError, match="closed"):
        fp.start()


def test_playback_time_counts_from_the_block_just_handed_minus_the_latency():
    fp = FilePlayback(np.zeros(48000, np.float32), 48000, play=False)
    # As a callback at monotonic time 100.0 leaves it: 4096 samples handed, the last 1024 of
    # them in that callback's block, whose first sample reaches the DAC 0.05 s later.
    fp._snapshot = (4096, 1024, 100.0, 0.05)
    assert fp.output_latency == 0.05
    start = 3072 / 48000 - 0.05  # heard at the callback: 0.05 s of audio before the block
    assert fp.playback_time(100.0) == pytest.approx(start)
    assert fp.playback_time(100.01) == pytest.approx(start + 0.01)
    assert fp.playback_time(99.0) == pytest.approx(start)  # older than the callback
    assert fp.playback_time(101.0) == 4096 / 48000  # never past what was handed over
    fp._snapshot = (1024, 1024, 100.0, 0.05)
    assert fp.playback_time(100.0) == 0.0  # the first block is not audible yet


def test_empty_file_finishes_at_once_without_a_device():
    ring = BlockRing(16)
    with FilePlayback(np.zeros((0, 1), np.float32), 48000, ring, play=False) as fp:
        assert fp.wait(timeout=10)
    assert fp.samples_played == 0 and ring.written_total == 0 and fp.playback_time() == 0.0


# -- (d) the callback never waits for the analysis -------------------------------------------------

# Two slow consumers, each reading one 1024-sample block per turn: "sleepy" sleeps 50 ms
# between reads (slow analysis that releases the GIL: numpy, onnxruntime, nogil numba);
# "greedy" also does ~5-10 ms of pure-Python work per read, holding the GIL until the
# interpreter's switch interval (5 ms) hands it over. `timed` measures each callback in the
# child: wall time from entry to return (what the device waits for; it includes any GIL
# hand-over and OS preemption on this shared 2-core machine) and the audio thread's CPU time
# (``time.thread_time``: the callback's own work, which must stay small whatever the
# consumer does), and the longest gap between callback entries.
_SLOW_CONSUMER = """
def start_slow_consumer(ring, greedy):
    stop = threading.Event()
    def consume():
        block = np.zeros((1024, ring.channels), np.float32)
        while not stop.is_set():
            ring.read(block)
            if greedy:
                sum(i * i for i in range(100_000))
            time.sleep(0.05)
    thread = threading.Thread(target=consume)
    thread.start()
    def finish():
        stop.set()
        thread.join()
    return finish

def timed(cls):
    class Timed(cls):
        cpu_max = wall_max = gap_max = 0.0
        last_entry = None
        def _callback(self, *args):
            entry, cpu = time.perf_counter(), time.thread_time()
            result = super()._callback(*args)
            cpu, wall = time.thread_time() - cpu, time.perf_counter() - entry
            self.cpu_max, self.wall_max = max(self.cpu_max, cpu), max(self.wall_max, wall)
            if self.last_entry is not None:
                self.gap_max = max(self.gap_max, entry - self.last_entry)
            self.last_entry = entry
            return result
    return Timed
"""


def _report(what: str, r: dict) -> None:
    print(f"\n{what}: {r['callbacks']} callbacks in {r['elapsed']:.2f} s; per callback max "
          f"CPU {r['cpu_max'] * 1e3:.3f} ms, max wall {r['wall_max'] * 1e3:.3f} ms, max gap "
          f"between callbacks {r['gap_max'] * 1e3:.3f} ms; delivered {r['delivered']}, "
          f"ring written {r['written']}, dropped {r['dropped']}, consumer read {r['read']}")


@pytest.mark.parametrize("greedy", [False, True], ids=["sleepy", "greedy"])
def test_mic_callback_keeps_going_and_counts_drops_when_the_consumer_is_slow(alsa, greedy):
    r = _child(f"""
        ring = BlockRing(4096)
        mic = timed(MicInput)(ring, device=INDEX["{CAPTURE_DEVICE}"], sample_rate=48000)
        finish_consumer = start_slow_consumer(ring, greedy={greedy})
        t0 = time.monotonic()
        mic.start()
        time.sleep(1.0)
        mic.stop()
        elapsed = time.monotonic() - t0
        finish_consumer()
        emit({{"delivered": mic.samples_delivered, "written": ring.written_total,
              "dropped": mic.dropped_samples, "read": ring.read_total,
              "callbacks": mic.samples_delivered // 1024, "elapsed": elapsed,
              "cpu_max": mic.cpu_max, "wall_max": mic.wall_max, "gap_max": mic.gap_max,
              "own_max": mic.max_callback_seconds}})
        mic.close()
    """, alsa.path, helpers=_SLOW_CONSUMER)
    _report(f"MicInput, {'greedy' if greedy else 'sleepy'} consumer", r)
    assert r["cpu_max"] < 0.005  # the callback's own work: small, whatever the consumer does
    assert r["own_max"] <= r["wall_max"]  # MicInput's statistic is inside the measured span
    assert r["callbacks"] > 47  # more than a real 48 kHz device delivers in 1 s: not held up
    assert r["dropped"] > 0  # the full ring dropped instead of waiting
    assert r["delivered"] == r["written"] + r["dropped"]  # every sample accounted for
    assert r["read"] <= 25 * 1024  # the consumer really was slow (<= 1 block per 50 ms)


def test_playback_is_not_held_back_by_a_slow_consumer(alsa, tmp_path):
    rate, n = 48000, 240000  # 5 s of stereo
    audio = np.random.default_rng(11).uniform(-0.9, 0.9, (n, 2)).astype(np.float32)
    audio[0] = (0.25, 0.25)
    np.save(tmp_path / "audio.npy", audio)
    r = _child(f"""
        audio = np.load("{tmp_path / 'audio.npy'}")
        ring = BlockRing(2048, channels=2)
        fp = timed(FilePlayback)(audio, {rate}, ring, device=INDEX["{PLAY_DEVICE}"])
        finish_consumer = start_slow_consumer(ring, greedy=True)
        t0 = time.monotonic()
        fp.start()
        finished = fp.wait(timeout=30)
        elapsed = time.monotonic() - t0
        finish_consumer()
        emit({{"finished": finished, "delivered": fp.samples_played,
              "written": ring.written_total, "dropped": ring.dropped_samples,
              "read": ring.read_total, "callbacks": -(-fp.samples_played // 1024),
              "elapsed": elapsed, "cpu_max": fp.cpu_max, "wall_max": fp.wall_max,
              "gap_max": fp.gap_max}})
        fp.close()
    """, alsa.path, helpers=_SLOW_CONSUMER)
    _report("FilePlayback, greedy consumer", r)
    assert r["finished"] and r["delivered"] == n
    assert r["cpu_max"] < 0.005
    assert r["dropped"] > 0 and r["written"] + r["dropped"] == n
    played = _played(alsa, 2)
    lead = _split_prefill(played, n)
    np.testing.assert_array_equal(played[lead:lead + n], audio)  # every sample was played


# -- (e) clear errors, never a hang ---------------------------------------------------------------

_ERRORS = """
def attempt(label, make):
    try:
        obj = make()
    except Exception as exc:
        return [label, type(exc).__name__, str(exc), isinstance(exc, OSError)]
    obj.close()
    return [label, None, None, None]
"""


def test_bad_devices_and_rates_get_clear_errors(alsa):
    result = _child(f"""
        ring = BlockRing(1024)
        audio = np.zeros((100, 1), np.float32)
        emit([
            attempt("index", lambda: MicInput(ring, device=99)),
            attempt("negative", lambda: MicInput(ring, device=-1)),
            attempt("no inputs", lambda: MicInput(ring, device=INDEX["{PLAY_ONLY_DEVICE}"])),
            attempt("rate", lambda: MicInput(ring, device=INDEX["{CAPTURE_DEVICE}"],
                                             sample_rate=10_000_000)),
            attempt("out index", lambda: FilePlayback(audio, 48000, ring, device=4)),
            attempt("out rate", lambda: FilePlayback(audio, 10_000_000, ring,
                                                     device=INDEX["{PLAY_DEVICE}"])),
            attempt("ok", lambda: MicInput(ring, device=INDEX["{CAPTURE_DEVICE}"])),
        ])
    """, alsa.path, helpers=_ERRORS)
    outcome = {label: (kind, message, is_os) for label, kind, message, is_os in result}
    for label, (kind, message, is_os) in outcome.items():
        print(f"\n{label}: {kind}: {message}")
        if label == "ok":
            assert kind is None
            continue
        assert kind == "AudioDeviceError" and is_os, label
        assert "--list-devices" in message, label
    assert "audio device 99 does not exist" in outcome["index"][1]
    assert "devices 0..3" in outcome["index"][1]
    assert "audio device -1 does not exist" in outcome["negative"][1]
    assert f"({PLAY_ONLY_DEVICE!r}) has 0 input channel(s), 1 needed" in outcome["no inputs"][1]
    assert "audio device 4 does not exist" in outcome["out index"][1]
    for label, direction in (("rate", "input"), ("out rate", "output")):
        message = outcome[label][1]
        assert f"for {direction} at 10000000 Hz" in message and "Invalid sample rate" in message


def test_no_device_at_all_is_a_clear_error(tmp_path, portaudio):
    result = _child("""
        ring = BlockRing(1024)
        emit({"devices": list_devices(), "text": format_devices(),
              "mic": attempt("mic", lambda: MicInput(ring)),
              "play": attempt("play", lambda: FilePlayback(np.zeros(10, np.float32), 48000,
                                                           ring))})
    """, write_no_device_config(tmp_path), helpers=_ERRORS)
    assert result["devices"] == []
    assert result["text"].startswith("no audio devices found")
    for key, direction in (("mic", "input"), ("play", "output")):
        _, kind, message, _ = result[key]
        assert kind == "AudioDeviceError"
        assert message.startswith("no audio device found") and direction in message


def test_alsa_configurations_portaudio_would_abort_on_are_refused(tmp_path, portaudio):
    configs = {
        "syntax_error": "pcm.broken { type null\n",
        "empty": "",  # PortAudio 19.6 aborts on these two (SIGABRT in BuildDeviceList)
        "no_default": "pcm.only_this { type null }\n",
    }
    for name, text in configs.items():
        (tmp_path / f"{name}.conf").write_text(text)
    # ALSA re-reads its configuration when ALSA_CONFIG_PATH changes, and the check runs
    # before PortAudio starts, so one child can try all three. (ALSA splits ALSA_CONFIG_PATH
    # at whitespace too: hence no spaces in these names.)
    script = (
        "import json, os\n"
        "from fractalsync_dsp.live_audio import list_devices, AudioDeviceError\n"
        "messages = {}\n"
        f"for name in {list(configs)!r}:\n"
        f"    os.environ['ALSA_CONFIG_PATH'] = {str(tmp_path)!r} + f'/{{name}}.conf'\n"
        "    try:\n        messages[name] = list_devices()\n"
        "    except AudioDeviceError as exc:\n        messages[name] = str(exc)\n"
        "print(json.dumps(messages))\n"
    )
    proc = run_portaudio(script, tmp_path / "empty.conf", timeout=60)
    assert proc.returncode == 0, proc.stderr  # not SIGABRT (-6)
    messages = json.loads(proc.stdout)
    for name in ("empty", "no_default"):
        assert f"({tmp_path}/{name}.conf) defines no `default` PCM" in messages[name]
    assert messages["syntax_error"].startswith("the ALSA configuration cannot be read")


def test_a_missing_device_is_one_error_line_and_exit_1_under_the_cli_rules(tmp_path, portaudio):
    script = (
        "from fractalsync_models.cli_errors import run_cli\n"
        "from fractalsync_dsp.block_ring import BlockRing\n"
        "from fractalsync_dsp.live_audio import MicInput\n"
        "raise SystemExit(run_cli('live', lambda argv: MicInput(BlockRing(8), device=3), []))\n"
    )
    proc = run_portaudio(script, write_no_device_config(tmp_path), timeout=60)
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert proc.stderr.startswith("live: error: no audio device found")
    assert proc.stderr.count("\n") == 1


def test_fractalsync_dsp_imports_without_pyaudio_and_says_what_to_install():
    script = (
        "import sys\n"
        "sys.modules['pyaudio'] = None  # as if the [live] extra were not installed\n"
        "import fractalsync_dsp, fractalsync_dsp.live_audio as la\n"
        "try:\n    la.list_devices()\nexcept la.AudioDeviceError as exc:\n    print(exc)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "pip install 'fractalsync-dsp[live]'" in proc.stdout


# -- argument checks and helpers (no PortAudio involved) -------------------------------------------


@pytest.mark.parametrize("make, error, match", [
    (lambda: FilePlayback(np.array([0.0, np.nan], np.float32), 8000, play=False),
     ValueError, "NaN"),
    (lambda: FilePlayback(np.zeros((2, 2, 2), np.float32), 8000, play=False),
     ValueError, "shape"),
    (lambda: FilePlayback(np.zeros(4, np.complex64), 8000, play=False), TypeError, "dtype"),
    (lambda: FilePlayback(np.zeros((4, 2), np.float32), 8000, BlockRing(8), play=False),
     ValueError, "1 channel"),
    (lambda: FilePlayback(np.zeros(4, np.float32), 8000, ring=[], play=False),
     TypeError, "BlockRing"),
    (lambda: FilePlayback(np.zeros(4, np.float32), 8000, device=0, play=False),
     ValueError, "play=False"),
    (lambda: FilePlayback(np.zeros(4, np.float32), None, play=False), TypeError, "required"),
    (lambda: FilePlayback(np.zeros(4, np.float32), 0, play=False), ValueError, "> 0"),
    (lambda: FilePlayback(np.zeros(4, np.float32), float("nan"), play=False),
     ValueError, "whole number"),
    (lambda: FilePlayback(np.zeros(4, np.float32), 44100.5, play=False),
     ValueError, "whole number"),
    (lambda: FilePlayback(np.zeros(4, np.float32), "44100", play=False), TypeError, "number"),
    (lambda: FilePlayback(np.zeros(4, np.float32), 8000, block_samples=0, play=False),
     ValueError, "block_samples"),
    (lambda: MicInput(BlockRing(8, channels=2)), ValueError, "2 channel"),
    (lambda: MicInput(BlockRing(8), channels=0), ValueError, "channels"),
    (lambda: MicInput(BlockRing(8), block_samples=1.5), TypeError, "block_samples"),
    (lambda: MicInput(np.zeros(8, np.float32)), TypeError, "BlockRing"),
])
def test_bad_arguments_are_refused_before_any_device_is_touched(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_format_devices_lists_each_device_and_marks_the_defaults():
    devices = [
        DeviceInfo(0, "hw card", "ALSA", 2, 0, 48000.0, True, False),
        DeviceInfo(1, "speakers", "ALSA", 0, 8, 44100.0, False, True),
    ]
    lines = format_devices(devices).splitlines()
    assert lines[1].split() == ["0", "2", "0", "48000", "<", "hw", "card", "[ALSA]"]
    assert lines[2].split() == ["1", "0", "8", "44100", ">", "speakers", "[ALSA]"]
    assert "--device N" in lines[-1]
    assert format_devices([]).startswith("no audio devices found")


def test_quiet_native_output_restores_the_previous_alsa_handler(portaudio):
    alsa = ctypes.CDLL("libasound.so.2")
    before = ctypes.c_void_p.in_dll(alsa, "snd_lib_error").value
    with _quiet_native_output():
        inside = ctypes.c_void_p.in_dll(alsa, "snd_lib_error").value
    assert inside != before
    assert ctypes.c_void_p.in_dll(alsa, "snd_lib_error").value == before


def test_audio_device_error_is_an_os_error():
    assert issubclass(AudioDeviceError, OSError)  # expected failure under cli_errors: exit 1
