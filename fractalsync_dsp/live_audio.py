"""Live audio through PortAudio (PyAudio, the ``[live]`` extra): microphone input, file playback
on the analysis clock's own samples, and the device list.

The audio callbacks here follow the roadmap's slow-clock rule: the PortAudio callback only
copies a block into a :class:`~fractalsync_dsp.block_ring.BlockRing`; the analysis thread reads
the ring at its own pace. Nothing in a callback waits for the consumer: a full ring drops and
counts the samples that do not fit.

What a callback costs, exactly (``MicInput._callback``, ``FilePlayback._callback``):

- PyAudio itself calls the callback with the GIL held and allocates, per call, the ``bytes``
  object of the input block (input streams), the ``time_info`` dict and the argument tuple;
  the callback's return value is copied by PyAudio into PortAudio's buffer.
- Our code copies the samples once: into the ring (`BlockRing.write`), and for playback also
  from the decoded file into a preallocated output block. No array data is allocated:
  ``np.frombuffer`` on the input bytes is a view (a small ndarray header, not a copy of the
  samples), and the ring's and the file's slices are views. The only other Python objects
  made are small fixed-size ones: ints for the counters, ``time.perf_counter`` floats for
  `max_callback_seconds`, the return tuple, and for playback a ``time.monotonic`` float and
  one 4-tuple snapshot of the clock.
- No lock, no logging, no printing, no waiting. The one shared resource is the GIL, which
  PyAudio's callback needs anyway: a consumer thread in pure Python gives it up every 5 ms
  (``sys.getswitchinterval()``), and numpy, soxr, onnxruntime and ``nogil`` numba kernels
  release it while they compute. The small objects above (PyAudio's included) count towards
  the garbage collector's thresholds, so a collection can run inside a callback; an app with
  a large heap may ``gc.freeze()`` after start-up to keep those collections short.

Device indices are range-checked before PyAudio sees them: PyAudio 0.2.14 on PortAudio 19.6
segfaults when ``open`` gets an index past the last device.

PyAudio is imported inside the functions, so that ``import fractalsync_dsp`` works without the
``[live]`` extra.

Native noise: initialising PortAudio makes ALSA print "ALSA lib ..." lines and libjack print
"Cannot connect to server socket ..." on stderr (nothing reaches stdout). While PortAudio is
initialised, and while a stream is opened, closed or terminated, :func:`_quiet_native_output`
swaps in do-nothing message handlers (``snd_lib_error_set_handler``,
``jack_set_error_function``/``jack_set_info_function`` through ctypes) and restores the previous
ones afterwards, so messages during a running stream still reach stderr. The swap is
process-wide: do not open devices from two threads at once.
"""

from __future__ import annotations

import contextlib
import ctypes
import math
import os
import threading
import time
from dataclasses import dataclass

import numpy as np

from fractalsync_dsp.block_ring import BlockRing
from fractalsync_dsp.sample_format import as_float32

__all__ = [
    "AudioDeviceError",
    "DeviceInfo",
    "FilePlayback",
    "MicInput",
    "format_devices",
    "list_devices",
]

_HINT = "run with --list-devices to see the devices PortAudio can open"

# PortAudio constants (portaudio.h), so that this module needs no pyaudio import at load time.
_PA_CONTINUE = 0
_PA_COMPLETE = 1
_PA_INPUT_OVERFLOW = 0x2
_PA_FLOAT32 = 1  # paFloat32 sample format


class AudioDeviceError(OSError):
    """No usable audio device: none at all, a bad index, too few channels, a rate the device
    refuses, or PyAudio missing. The message names the device and what to do (an OSError, so
    that FractalSync commands report it as one ``PROG: error: ...`` line and exit 1)."""


@dataclass(frozen=True)
class DeviceInfo:
    """One PortAudio device as :func:`list_devices` reports it.

    Attributes
    ----------
    index : int
        PortAudio's device index: the ``--device N`` value and the ``device=`` argument.
    name : str
        The device's name (for ALSA, the PCM name, e.g. ``default`` or ``hw:0,0``'s card name).
    host_api : str
        PortAudio host API (``ALSA``, ``OSS``, ``JACK Audio Connection Kit`` ...).
    max_input_channels, max_output_channels : int
        Channel limits; 0 means the device cannot capture (resp. play).
    default_sample_rate : float
        The device's default rate in Hz (used when no rate is asked for).
    is_default_input, is_default_output : bool
        Whether PortAudio picks this device when none is named.
    """

    index: int
    name: str
    host_api: str
    max_input_channels: int
    max_output_channels: int
    default_sample_rate: float
    is_default_input: bool
    is_default_output: bool


# -- native message handlers --------------------------------------------------------------------

_ALSA_HANDLER = ctypes.CFUNCTYPE(
    None, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p
)
_JACK_HANDLER = ctypes.CFUNCTYPE(None, ctypes.c_char_p)
# Kept alive for the life of the process: the C libraries hold raw pointers to them.
_ALSA_SILENT = _ALSA_HANDLER(lambda *_: None)
_JACK_SILENT = _JACK_HANDLER(lambda _: None)


_libs: dict[str, object] = {}


def _library(soname: str):
    """The shared library ``soname`` (the one PortAudio is linked against, already loaded by
    then), or None when this system has none; looked up once per process."""
    if soname not in _libs:
        try:
            _libs[soname] = ctypes.CDLL(soname)
        except OSError:
            _libs[soname] = None
    return _libs[soname]


@contextlib.contextmanager
def _quiet_native_output():
    """Silence ALSA's and libjack's stderr messages inside the block; restore the previous
    handlers afterwards (the library's own default handler included). A library that is not
    installed is left alone."""
    alsa, jack = _library("libasound.so.2"), _library("libjack.so.0")
    saved = []
    try:
        if alsa is not None:
            previous = ctypes.c_void_p.in_dll(alsa, "snd_lib_error").value
            alsa.snd_lib_error_set_handler(_ALSA_SILENT)
            saved.append((alsa.snd_lib_error_set_handler, previous))
        if jack is not None:
            for setter, variable, silent in (
                (jack.jack_set_error_function, "jack_error_callback", _JACK_SILENT),
                (jack.jack_set_info_function, "jack_info_callback", _JACK_SILENT),
            ):
                previous = ctypes.c_void_p.in_dll(jack, variable).value
                setter(silent)
                saved.append((setter, previous))
        yield
    finally:
        for setter, previous in reversed(saved):
            setter(ctypes.c_void_p(previous))


# -- PortAudio sessions -------------------------------------------------------------------------


def _pyaudio():
    """The pyaudio module, or AudioDeviceError saying how to install the ``[live]`` extra."""
    try:
        import pyaudio
    except ImportError as exc:
        raise AudioDeviceError(
            f"live audio needs PyAudio, the [live] extra: pip install 'fractalsync-dsp[live]' "
            f"({exc})"
        ) from exc
    return pyaudio


def _check_alsa_config() -> None:
    """Refuse, with AudioDeviceError, an ALSA configuration that would make PortAudio abort.

    PortAudio 19.6's ALSA host (Debian's libportaudio2) ends its device scan with
    ``assert(devIdx < numDeviceNames)``: when every PCM it found opened and none of them is
    ``default`` or ``dmix``, that assertion fails and the whole process aborts. That is the
    case for an ALSA configuration that cannot be read (e.g. a missing ``alsa.conf``) or
    that defines neither ``pcm.default`` nor ``pcm.dmix`` (an empty ``ALSA_CONFIG_PATH``
    file, say). Such a configuration has no default device anyway, so it is refused here,
    before PortAudio starts. Nothing is checked where libasound is not installed.
    """
    alsa = _library("libasound.so.2")
    if alsa is None:
        return
    alsa.snd_strerror.restype = ctypes.c_char_p
    with _quiet_native_output():
        err = alsa.snd_config_update()
    if err < 0:
        reason = alsa.snd_strerror(err).decode(errors="replace")
        raise AudioDeviceError(f"the ALSA configuration cannot be read ({reason}); check "
                               "ALSA_CONFIG_PATH, /usr/share/alsa/alsa.conf and ~/.asoundrc")
    top = ctypes.c_void_p.in_dll(alsa, "snd_config")
    node = ctypes.c_void_p()
    for key in (b"pcm.default", b"pcm.dmix"):
        if alsa.snd_config_search(top, key, ctypes.byref(node)) == 0:
            return
    where = os.environ.get("ALSA_CONFIG_PATH") or "/usr/share/alsa/alsa.conf and ~/.asoundrc"
    raise AudioDeviceError(f"the ALSA configuration ({where}) defines no `default` PCM, on "
                           "which PortAudio 19.6 would abort; define pcm.!default there")


def _open_portaudio():
    """A new ``pyaudio.PyAudio`` session (PortAudio initialised quietly, after
    :func:`_check_alsa_config`). Close it with :func:`_close_portaudio`."""
    pyaudio = _pyaudio()
    _check_alsa_config()
    with _quiet_native_output():
        return pyaudio.PyAudio()


def _close_portaudio(pa) -> None:
    """Terminate a PortAudio session opened by :func:`_open_portaudio`."""
    with _quiet_native_output():
        pa.terminate()


def _device_infos(pa) -> list[DeviceInfo]:
    """Every device of an open session."""
    try:
        default_in = pa.get_default_input_device_info()["index"]
    except OSError:
        default_in = -1
    try:
        default_out = pa.get_default_output_device_info()["index"]
    except OSError:
        default_out = -1
    devices = []
    for i in range(pa.get_device_count()):
        d = pa.get_device_info_by_index(i)
        devices.append(DeviceInfo(
            index=i,
            name=str(d["name"]),
            host_api=str(pa.get_host_api_info_by_index(d["hostApi"])["name"]),
            max_input_channels=int(d["maxInputChannels"]),
            max_output_channels=int(d["maxOutputChannels"]),
            default_sample_rate=float(d["defaultSampleRate"]),
            is_default_input=i == default_in,
            is_default_output=i == default_out,
        ))
    return devices


def list_devices() -> list[DeviceInfo]:
    """Every audio device PortAudio sees, in index order (possibly an empty list).

    Raises
    ------
    AudioDeviceError
        PyAudio (the ``[live]`` extra) is not installed.
    """
    pa = _open_portaudio()
    try:
        return _device_infos(pa)
    finally:
        _close_portaudio(pa)


def format_devices(devices: list[DeviceInfo] | None = None) -> str:
    """The device list as text for ``--list-devices`` (no trailing newline).

    Parameters
    ----------
    devices : list of DeviceInfo, optional
        What to show; default :func:`list_devices`.

    Returns
    -------
    str
        A header line, then one line per device: index, input and output channels, default
        rate in Hz, ``<`` / ``>`` marking the default input / output, name and host API. With
        no device, one line saying so and what to check.
    """
    if devices is None:
        devices = list_devices()
    if not devices:
        return ("no audio devices found: PortAudio sees no device (is a sound card or an ALSA "
                "PCM configured? try `aplay -L` and `arecord -L`)")
    lines = ["index   in  out     rate  default  name [host API]"]
    for d in devices:
        marks = ("<" if d.is_default_input else " ") + (">" if d.is_default_output else " ")
        lines.append(f"{d.index:5d} {d.max_input_channels:4d} {d.max_output_channels:4d} "
                     f"{d.default_sample_rate:8.0f}  {marks:7s}  {d.name} [{d.host_api}]")
    lines.append("(< default input, > default output; pass the index as --device N)")
    return "\n".join(lines)


def _resolve_device(pa, device, direction: str, channels: int) -> DeviceInfo:
    """The DeviceInfo for ``device`` (an index, or None for the default ``direction`` device,
    "input" or "output") checked to have at least ``channels`` channels that way."""
    if device is not None and (isinstance(device, bool)
                               or not isinstance(device, (int, np.integer))):
        raise TypeError(f"device must be a device index (int) or None, got {device!r}")
    devices = _device_infos(pa)
    if not devices:
        raise AudioDeviceError(
            f"no audio device found: PortAudio sees no device at all, so there is nothing to "
            f"open for {direction} (connect one or configure ALSA; `aplay -L` lists its PCMs)"
        )
    if device is None:
        chosen = [d for d in devices
                  if (d.is_default_input if direction == "input" else d.is_default_output)]
        if not chosen:
            raise AudioDeviceError(f"no default audio {direction} device; pass --device N with "
                                   f"an {direction} device ({_HINT})")
        info = chosen[0]
    else:
        if not 0 <= device < len(devices):
            raise AudioDeviceError(f"audio device {device} does not exist: PortAudio has "
                                   f"devices 0..{len(devices) - 1} ({_HINT})")
        info = devices[int(device)]
    have = info.max_input_channels if direction == "input" else info.max_output_channels
    if have < channels:
        raise AudioDeviceError(
            f"audio device {info.index} ({info.name!r}) has {have} {direction} channel(s), "
            f"{channels} needed; choose an {direction} device ({_HINT})"
        )
    return info


def _rate(sample_rate, info: DeviceInfo | None) -> int:
    """The stream rate in Hz: ``sample_rate`` checked (a whole number > 0), or the device's
    default when None (with a device; without one, None is refused)."""
    if sample_rate is None and info is None:
        raise TypeError("sample_rate is required: the audio's rate in Hz")
    if sample_rate is None:
        return int(round(info.default_sample_rate))
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, float, np.number)):
        raise TypeError(f"sample_rate must be a number of Hz or None, got {sample_rate!r}")
    if not (math.isfinite(sample_rate) and sample_rate > 0 and sample_rate == int(sample_rate)):
        raise ValueError(f"sample_rate must be a whole number of Hz > 0, got {sample_rate!r}")
    return int(sample_rate)


def _open_stream(pa, info: DeviceInfo, direction: str, rate: int, channels: int,
                 block_samples: int, callback):
    """A stopped callback stream on ``info``, or AudioDeviceError naming device, rate and
    PortAudio's reason."""
    device_arg = "input_device_index" if direction == "input" else "output_device_index"
    try:
        with _quiet_native_output():
            return pa.open(rate=rate, channels=channels, format=_PA_FLOAT32,
                           frames_per_buffer=block_samples, start=False,
                           stream_callback=callback, **{direction: True, device_arg: info.index})
    except (OSError, ValueError) as exc:
        reason = exc.args[1] if len(exc.args) == 2 else str(exc)
        raise AudioDeviceError(
            f"cannot open audio device {info.index} ({info.name!r}) for {direction} at {rate} Hz "
            f"with {channels} channel(s): {reason}; try its default rate "
            f"({info.default_sample_rate:g} Hz) or another device ({_HINT})"
        ) from exc


def _check_count(value, name: str, minimum: int = 1) -> int:
    """``value`` as an int >= minimum, or ValueError/TypeError naming it."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def _check_ring(ring, channels: int, name: str = "ring") -> None:
    """``ring`` must be a BlockRing holding ``channels`` channels."""
    if not isinstance(ring, BlockRing):
        raise TypeError(f"{name} must be a BlockRing, got {type(ring).__name__}")
    if ring.channels != channels:
        raise ValueError(f"{name} has {ring.channels} channel(s), the stream {channels}")


class _Stream:
    """What MicInput and FilePlayback share: a PortAudio session and one callback stream, its
    start/stop/close and context-manager protocol, and the callback-time statistic."""

    def __init__(self) -> None:
        self._pa = None
        self._stream = None
        self._closed = False
        self._max_callback = 0.0  # written by the callback only

    def _open(self, device, direction: str, channels: int, sample_rate, block_samples: int):
        """Open the session and a stopped stream; sets ``device``, ``sample_rate``."""
        self._pa = _open_portaudio()
        try:
            self.device = _resolve_device(self._pa, device, direction, channels)
            self.sample_rate = _rate(sample_rate, self.device)
            self._stream = _open_stream(self._pa, self.device, direction, self.sample_rate,
                                        channels, block_samples, self._callback)
        except BaseException:
            _close_portaudio(self._pa)
            self._pa = None
            raise

    @property
    def max_callback_seconds(self) -> float:
        """The longest wall-clock time one callback took from entry to return, in seconds (0
        before the first; ``time.perf_counter``).

        Wall time includes what the callback does not control: another Python thread may take
        the GIL at a bytecode boundary inside the callback (for up to
        ``sys.getswitchinterval()``, 5 ms by default, each time), and the OS may preempt the
        audio thread. The callback's own work is a fraction of a millisecond (measured as
        thread CPU time in tests/test_live_audio.py)."""
        return self._max_callback

    @property
    def active(self) -> bool:
        """Whether the stream is running (False after the end of a file, `stop` or `close`)."""
        return self._stream is not None and self._stream.is_active()

    def start(self) -> None:
        """Start (or restart after `stop`) delivering audio; the counters keep counting."""
        if self._closed:
            raise RuntimeError(f"{type(self).__name__} is closed")
        if self._stream is not None and not self._stream.is_active():
            if not self._stream.is_stopped():  # a stream that completed must be stopped first
                self._stream.stop_stream()
            self._stream.start_stream()

    def stop(self) -> None:
        """Stop the stream (waits for a running callback to return; never for the consumer)."""
        if self._stream is not None and not self._stream.is_stopped():
            self._stream.stop_stream()

    def close(self) -> None:
        """Stop and release the device and the PortAudio session; idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            self.stop()
            if self._stream is not None:
                with _quiet_native_output():
                    self._stream.close()
        finally:
            if self._pa is not None:
                _close_portaudio(self._pa)
            self._stream = self._pa = None

    def __enter__(self):
        """Start the stream; the ``with`` block's end closes it."""
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class MicInput(_Stream):
    """A live input stream (microphone or line in) that copies every block into a BlockRing.

    The PortAudio stream runs in callback mode; the callback does only this: view the block's
    bytes as float32 samples (``np.frombuffer``: a view), `BlockRing.write` them (one copy into
    the preallocated ring; on a full ring the excess is dropped and counted, never waited for),
    count PortAudio's input-overflow flag and the samples delivered, and return
    ``paContinue``. See the module docstring for its exact allocations.

    Parameters
    ----------
    ring : BlockRing
        Where the samples go; ``ring.channels`` must equal `channels`. The analysis thread
        reads it.
    device : int or None
        PortAudio device index (see :func:`list_devices`); None is the default input device.
    sample_rate : int or None
        Stream rate in Hz, a whole number; None uses the device's default (typically 48000;
        the ALSA null/file PCMs report 44100).
    channels : int, default 1
        Channels captured (interleaved frames become ``(n, channels)`` rows of the ring).
    block_samples : int, default 1024
        Samples per callback (PortAudio's frames per buffer): 21.3 ms at 48 kHz.

    The stream is opened (so any device error is raised) here, stopped; `start` it or use
    ``with MicInput(...) as mic:`` (starts, and closes at the end).

    Raises
    ------
    AudioDeviceError
        No device, a bad index, too few input channels, a rate the device refuses, or no
        PyAudio. Never hangs.
    TypeError, ValueError
        Bad argument types or values (a ring of another channel count, channels < 1 ...).
    """

    def __init__(self, ring: BlockRing, device: int | None = None, sample_rate=None,
                 channels: int = 1, block_samples: int = 1024) -> None:
        super().__init__()
        self.channels = _check_count(channels, "channels")
        self.block_samples = _check_count(block_samples, "block_samples")
        _check_ring(ring, self.channels)
        self._ring = ring
        self._delivered = 0  # callback only
        self._overflows = 0  # callback only
        self._open(device, "input", self.channels, sample_rate, self.block_samples)
        self._latency = float(self._stream.get_input_latency())

    def _callback(self, in_data, frame_count, time_info, status):
        """PortAudio's audio thread: copy the block into the ring, count, continue."""
        t0 = time.perf_counter()
        block = np.frombuffer(in_data, dtype=np.float32)
        if self.channels > 1:
            block = block.reshape(frame_count, self.channels)
        self._ring.write(block)
        if status & _PA_INPUT_OVERFLOW:
            self._overflows += 1
        self._delivered += frame_count
        spent = time.perf_counter() - t0
        if spent > self._max_callback:
            self._max_callback = spent
        return None, _PA_CONTINUE

    @property
    def latency(self) -> float:
        """PortAudio's input latency of the stream in seconds (capture to callback)."""
        return self._latency

    @property
    def samples_delivered(self) -> int:
        """Samples (frames of all channels) the device delivered since construction,
        including any the ring dropped."""
        return self._delivered

    @property
    def stream_time(self) -> float:
        """Seconds of audio delivered: ``samples_delivered / sample_rate``."""
        return self._delivered / self.sample_rate

    @property
    def dropped_samples(self) -> int:
        """Samples the ring dropped because the consumer fell behind (the ring's counter)."""
        return self._ring.dropped_samples

    @property
    def input_overflows(self) -> int:
        """Callbacks PortAudio flagged with paInputOverflow (audio lost before the callback,
        e.g. while the GIL was held too long)."""
        return self._overflows


class FilePlayback(_Stream):
    """Play decoded audio on an output device and feed the same blocks to the analysis ring.

    Each output callback copies the next ``block_samples`` samples of `audio` into a
    preallocated block (zero-padded at the end of the file), writes exactly those file samples
    into `ring`, advances `samples_played` and returns the block to PortAudio. Playback and
    analysis therefore see one sample sequence on one clock: the k-th sample the ring yields
    is the k-th sample handed to the device.

    End of file: the callbacks return ``paContinue`` while file samples remain (the last block
    zero-padded); the first callback with none left returns a block of zeros with
    ``paComplete``, PortAudio plays out what it holds and stops, and `finished` becomes True.

    ``play=False``: no PortAudio at all (for machines without an output device). A daemon
    thread paces the same blocks into the ring in real time, block k at ``t0 + k *
    block_samples / sample_rate`` on ``time.monotonic()`` (absolute deadlines, so no drift);
    the counters, `playback_time` and `finished` behave as with a device of zero latency.

    Parameters
    ----------
    audio : array, shape (n,) or (n, channels)
        Decoded samples, float32 (float64/int16/int32 are converted as in
        :mod:`fractalsync_dsp.sample_format`; NaN/inf are refused). n may be 0.
    sample_rate : int
        The audio's rate in Hz and the stream's (a whole number > 0). A device that refuses
        it raises AudioDeviceError: resample first (``fractalsync_dsp.resample``).
    ring : BlockRing or None
        Gets every played block; ``ring.channels`` must equal the audio's channel count.
        None plays without analysis.
    device : int or None
        Output device index; None is the default output device. Must be None when
        ``play=False``.
    block_samples : int, default 1024
        Samples per callback / paced block.
    play : bool, default True
        False paces into the ring without opening any device.

    Raises
    ------
    AudioDeviceError
        As for MicInput (output direction), when ``play=True``.
    TypeError, ValueError
        Bad audio (dtype, shape, NaN/inf), ring or arguments.
    """

    def __init__(self, audio, sample_rate, ring: BlockRing | None = None,
                 device: int | None = None, block_samples: int = 1024,
                 play: bool = True) -> None:
        super().__init__()
        rate = _rate(sample_rate, None)
        arr = as_float32(audio, "audio")
        if arr.ndim == 1:
            arr = arr.reshape(-1, 1)
        if arr.ndim != 2 or arr.shape[1] < 1:
            raise ValueError(f"audio must have shape (n,) or (n, channels), got {arr.shape}")
        self._audio = np.ascontiguousarray(arr)
        self.channels = self._audio.shape[1]
        self.block_samples = _check_count(block_samples, "block_samples")
        if ring is not None:
            _check_ring(ring, self.channels)
        self._ring = ring
        self.play = bool(play)
        self._out = np.zeros((self.block_samples, self.channels), np.float32)
        self._played = 0  # callback (or pacing thread) only
        self._completed = False  # callback only: the paComplete block was returned
        # (samples played after the last callback, file samples in it, its time.monotonic(),
        # seconds from that callback until its first sample reaches the DAC): one tuple, so a
        # reader never sees parts of two callbacks.
        self._snapshot = (0, 0, None, 0.0)
        self._thread = None
        self._halt = threading.Event()
        if self.play:
            self._open(device, "output", self.channels, rate, self.block_samples)
            self._fallback_latency = float(self._stream.get_output_latency())
        else:
            if device is not None:
                raise ValueError("device must be None when play=False (no device is opened)")
            self.device = None
            self.sample_rate = rate
            self._fallback_latency = 0.0

    # -- the producer ----------------------------------------------------------------------

    def _next_block(self) -> int:
        """Copy the next file samples into the output block, zero the rest, hand the file
        samples to the ring and advance the counter; the number of file samples."""
        start = self._played
        n = min(self.block_samples, self._audio.shape[0] - start)
        out = self._out
        if n > 0:
            out[:n] = self._audio[start:start + n]
            if self._ring is not None:
                self._ring.write(out[:n])
        else:
            n = 0
        if n < self.block_samples:
            out[n:] = 0.0
        self._played = start + n
        return n

    def _callback(self, in_data, frame_count, time_info, status):
        """PortAudio's audio thread: the next block, to the device and to the ring."""
        t0 = time.perf_counter()
        now = time.monotonic()
        n = self._next_block()
        dac = time_info["output_buffer_dac_time"]
        lead = dac - time_info["current_time"] if dac > 0 else self._fallback_latency
        self._snapshot = (self._played, n, now, lead)
        flag = _PA_CONTINUE
        if n == 0:
            self._completed = True
            flag = _PA_COMPLETE
        spent = time.perf_counter() - t0
        if spent > self._max_callback:
            self._max_callback = spent
        return self._out, flag

    def _pace(self) -> None:
        """The ``play=False`` thread: one block per block duration until the file ends or
        `stop`."""
        period = self.block_samples / self.sample_rate
        t0 = time.monotonic()
        k = 0
        while not self._halt.is_set():
            n = self._next_block()
            self._snapshot = (self._played, n, time.monotonic(), 0.0)
            if n == 0:
                self._completed = True
                return
            k += 1
            self._halt.wait(max(0.0, t0 + k * period - time.monotonic()))

    # -- control ---------------------------------------------------------------------------

    def start(self) -> None:
        """Start (or resume after `stop`) playback from `samples_played`."""
        if self.play:
            super().start()
            return
        if self._closed:
            raise RuntimeError("FilePlayback is closed")
        if self._thread is None or not self._thread.is_alive():
            self._halt.clear()
            self._thread = threading.Thread(target=self._pace, name="FilePlayback-pace",
                                            daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop playback (PortAudio's stop, or the pacing thread's end); resumable."""
        if self.play:
            super().stop()
            return
        self._halt.set()
        if self._thread is not None:
            self._thread.join()

    @property
    def active(self) -> bool:
        """Whether blocks are still being played or paced."""
        if self.play:
            return super().active
        return self._thread is not None and self._thread.is_alive()

    @property
    def finished(self) -> bool:
        """True once the whole file was handed over and the stream (or thread) has ended."""
        return self._completed and not self.active

    def wait(self, timeout: float | None = None, poll_interval: float = 0.005) -> bool:
        """Wait until `finished` (True) or `timeout` seconds (False); polls, never blocks the
        callback."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.finished:
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(poll_interval)
        return True

    # -- the clock -------------------------------------------------------------------------

    @property
    def samples_played(self) -> int:
        """File samples handed to PortAudio (or paced) so far: monotonic, written only by the
        callback; the ring got exactly these samples, in this order (minus any it dropped)."""
        return self._played

    @property
    def samples_total(self) -> int:
        """Samples in the file."""
        return self._audio.shape[0]

    @property
    def output_latency(self) -> float:
        """Seconds from the last callback until its block's first sample reaches the DAC:
        the callback's ``output_buffer_dac_time - current_time`` when PortAudio provides a DAC
        time (ALSA derives it from the PCM's delay), else the stream's
        ``get_output_latency()``; 0 with ``play=False``."""
        return self._snapshot[3] if self._snapshot[2] is not None else self._fallback_latency

    def playback_time(self, now: float | None = None) -> float:
        """Stream time in seconds of the sample being heard at ``now``.

        With the last callback's snapshot (``S`` samples handed after it, ``n`` of them in its
        block, called at ``c``, its first sample at the DAC `output_latency` ``L`` later)::

            t = (S - n) / sample_rate - L + max(now - c, 0),   clipped to [0, S / sample_rate]

        i.e. "samples handed to PortAudio / rate minus the output latency", counted from the
        start of the block just handed (that block's first sample is the one that reaches the
        DAC after L) and advanced in real time since that callback. It never runs past the
        samples handed over, so a stalled stream freezes the clock instead of inventing audio.

        Parameters
        ----------
        now : float, optional
            A ``time.monotonic()`` reading; default: now. A reading older than the last
            callback counts as that callback's time, so the result never decreases across
            calls with increasing ``now``.

        Returns
        -------
        float
            Seconds; 0.0 before the first callback.
        """
        played, n, called, lead = self._snapshot
        if called is None:
            return 0.0
        if now is None:
            now = time.monotonic()
        t = (played - n) / self.sample_rate - lead + max(now - called, 0.0)
        return min(max(t, 0.0), played / self.sample_rate)

    def close(self) -> None:
        """Stop and release the device (if any); idempotent."""
        if self.play:
            super().close()
            return
        self.stop()
        self._closed = True
