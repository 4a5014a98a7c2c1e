"""Fuzz every console script as a subprocess (issue 14): whatever the arguments, paths and
files, a command ends within a time limit with exit status 0, 1 or 2, no Python traceback and
no crash report (i.e. no unexpected exception), and every line it prints on stderr is one of
its own ``PROG: ...`` lines (or a ``[n/m]`` progress line, or a note libmpg123 prints itself on
a damaged MP3).

Hypothesis generates argument lists (the commands' flags with fuzzed values, numbers, odd
strings), paths (missing, directories, symlinks, dangling and looping symlinks, a file on the
way, /sys where even root cannot create anything, names with spaces, unicode and undecodable
bytes, names too long) and files (random bytes, a real WAV cut anywhere, NaN/inf samples,
empty files, headers patched with huge sizes, rates and channel counts; for the converter,
wheels whose weights file is cut, bit-flipped or replaced). Each example runs in a fresh
directory (the working directory of the command). The converter runs with FRACTALSYNC_HOME in
that directory and PIP_NO_INDEX=1, so it never downloads anything nor writes to the real model
directory. fractalsync-beats reads the session's converted models through a symlink.

Examples per command: $FRACTALSYNC_FUZZ_EXAMPLES (default 40, deterministic under the ``ci``
hypothesis profile, i.e. CI=true; each run costs about a second of start-up).
"""

from __future__ import annotations

import io
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

BIN = Path(sys.executable).parent
EXAMPLES = int(os.environ.get("FRACTALSYNC_FUZZ_EXAMPLES", "40"))
TIMEOUT_S = 90
SR = 22050
REFERENCE = Path(__file__).parent / "data" / "reference" / "vibe_ace" / "x22050.npy"
WEIGHTS_MEMBER = "BeatNet/models/model_{}_weights.pt"

FUZZ = settings(max_examples=EXAMPLES, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


# ------------------------------------------------------------------ ingredients


def _wav_bytes(audio: np.ndarray, subtype: str) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, audio, SR, format="WAV", subtype=subtype)
    return buf.getvalue()


class Ingredients(dict):
    """Real material to cut and patch, with a short repr (hypothesis prints the arguments of a
    failing example, fixtures included)."""

    def __repr__(self) -> str:
        return "<ingredients>"


@pytest.fixture(scope="module")
def ingredients(beatnet_models_dir):
    """3 s of "Vibe Ace" as 16-bit and float WAV, the models directory and BeatNet's weights
    file (model 1) from the session's wheel."""
    from fractalsync_models.export_beatnet import fetch_wheel

    audio = np.load(REFERENCE)[: 3 * SR]
    with zipfile.ZipFile(fetch_wheel()) as whl:
        weights = whl.read(WEIGHTS_MEMBER.format(1))
    return Ingredients(pcm=_wav_bytes(audio, "PCM_16"), float=_wav_bytes(audio, "FLOAT"),
                       audio=audio, models=beatnet_models_dir, weights=weights)


# ------------------------------------------------------------------ strategies

NAME_CHARS = "ab Z-_.é中🎵'\"$*?[]\udcff"  # \udcff: the undecodable byte 0xff in a file name
names = st.text(NAME_CHARS, min_size=1, max_size=10).filter(lambda s: s not in (".", ".."))
suffixes = st.sampled_from([".wav", ".WAV", ".flac", ".mp3", ".ogg", ".txt", ""])
numbers = st.one_of(
    st.floats().map(repr),
    st.integers(-(10**6), 10**6).map(str),
    st.sampled_from(["nan", "-inf", "inf", "1e308", "1e-308", "0", "-0", "1_000", "٣", " 5 ",
                     "0x10", "", "abc"]),
)
BEATS_OPTIONS = ["--json", "--csv", "--txt", "--force", "--online", "--quiet", "--min-bpm",
                 "--max-bpm", "--tempo-window", "--model", "--out"]
odd_strings = st.one_of(
    st.sampled_from(["", "-", "--", "---", "-x", "--nope", "--json=1", "-h"]),
    st.text(NAME_CHARS, max_size=8),
)

# file contents: (kind, parameters); built by _content
contents = st.one_of(
    st.tuples(st.just("random"), st.binary(max_size=3000)),
    st.tuples(st.just("empty"), st.none()),
    st.tuples(st.sampled_from(["pcm", "float"]),  # a real WAV, whole or cut at a fraction
              st.one_of(st.just(1.0), st.floats(0, 1))),
    st.tuples(st.just("nan"), st.lists(st.integers(0, 3 * SR - 1), min_size=1, max_size=5)),
    st.tuples(st.just("header"), st.tuples(
        st.sampled_from([4, 22, 24, 28, 32, 34, 40]),  # RIFF size, channels, rate, ..., data size
        st.sampled_from([0, 1, 2, 255, 65535, 2**31 - 1, 2**32 - 1]))),
    st.tuples(st.just("flip"), st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)),
                                        min_size=1, max_size=8)),
)


def _flipped(data: bytes, flips) -> bytes:
    """``data`` with ``data[pos % len] = byte`` for each ``(pos, byte)``."""
    out = bytearray(data)
    for pos, byte in flips:
        out[pos % len(out)] = byte
    return bytes(out)


def _content(kind, arg, ing) -> bytes:
    """The bytes of a file for a ``contents`` spec."""
    if kind == "random":
        return arg
    if kind == "empty":
        return b""
    if kind in ("pcm", "float"):
        data = ing[kind]
        return data[: int(len(data) * arg)]
    if kind == "nan":
        audio = ing["audio"].copy()
        audio[arg] = [(np.nan, np.inf, -np.inf)[i % 3] for i in range(len(arg))]
        return _wav_bytes(audio, "FLOAT")
    data = bytearray(ing["pcm"])
    if kind == "header":
        offset, value = arg
        width = 2 if offset in (22, 32, 34) else 4
        data[offset: offset + width] = struct.pack("<I" if width == 4 else "<H",
                                                   value & (2 ** (8 * width) - 1))
        return bytes(data)
    return _flipped(data, arg)  # flip


PATH_KINDS = ("missing", "dir", "empty_dir", "symlink", "dangling", "loop", "under_file",
              "trailing_slash", "long", "sys", "dev", "dash", "file")
INPUT_KINDS = (*["file"] * 6, *PATH_KINDS)
OUT_KINDS = (*["missing"] * 4, *PATH_KINDS)  # mostly a new directory


@st.composite
def paths(draw, file_content=contents, kinds=INPUT_KINDS):
    """A path spec: (kind, name, payload); _make turns it into a path in the sandbox."""
    kind = draw(st.sampled_from(kinds))
    name = draw(names) + draw(suffixes)
    payload = draw(file_content) if kind in ("file", "symlink", "trailing_slash") else None
    if kind == "dir":
        payload = draw(st.lists(st.tuples(names, suffixes, file_content), max_size=2))
    if kind == "dev":
        payload = draw(st.sampled_from(["/dev/null", "/dev/zero", "/proc/self/status"]))
    return kind, name, payload


out_paths = paths(file_content=st.just(("empty", None)), kinds=OUT_KINDS)


def _make(spec, root: Path, ing, make_content=_content) -> str:
    """Create what the spec describes under ``root``; return the argument naming it. Names
    get a prefix unique in ``root``, so that the specs of one example do not collide."""
    kind, name, payload = spec
    name = f"{sum(1 for _ in root.iterdir())}{name}"
    path = root / name
    if kind == "missing":
        return str(path)
    if kind == "long":
        return str(root / ("x" * 300 + name))
    if kind == "sys":
        return f"/sys/fractalsync_fuzz/{name}"
    if kind in ("dev", "dash"):
        return payload if kind == "dev" else "-"
    if kind in ("dir", "empty_dir"):
        path.mkdir(exist_ok=True)
        for inner, suffix, content in payload or ():
            (path / (inner + suffix)).write_bytes(make_content(*content, ing))
        return str(path)
    if kind == "dangling":
        path.symlink_to(root / "nowhere" / name)
        return str(path)
    if kind == "loop":
        path.symlink_to(path)
        return str(path)
    if kind == "under_file":
        path.write_bytes(b"a file where a directory should be")
        return str(path / "sub" / "x.wav")
    data = make_content(*payload, ing)
    if kind == "symlink":
        target = root / f"target_{name}"
        target.write_bytes(data)
        path.symlink_to(target)
        return str(path)
    path.write_bytes(data)
    return str(path) + ("/" if kind == "trailing_slash" else "")


def _relative(arg: str, root: Path) -> str:
    """Paths in the sandbox as the user would type them: relative to the working directory."""
    return os.path.relpath(arg, root) if arg.startswith(str(root)) else arg


# ------------------------------------------------------------------ running and checking


#: libmpg123, which libsndfile decodes MP3 with, writes notes on a damaged MP3 straight to the
#: process's stderr (e.g. "Note: Illegal Audio-MPEG-Header 0x00000000 at offset 0."); libsndfile
#: offers no switch to quiet it (README, Known limits).
MPG123_NOTE = "Note: "


def _run(exe: str, argv: list[str], cwd: Path, home: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "FRACTALSYNC_HOME": str(home), "PIP_NO_INDEX": "1"}
    return subprocess.run([str(BIN / exe), *argv], cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                          capture_output=True, timeout=TIMEOUT_S)


def _check(res: subprocess.CompletedProcess, prog: str, home: Path) -> None:
    err = res.stderr.decode("utf-8", "replace")
    assert res.returncode in (0, 1, 2), err
    assert "Traceback" not in err, err
    assert not (home / "crash").exists(), err  # an unexpected exception (a bug) was reported
    lines = err.splitlines()
    if res.returncode == 2:  # argparse: usage lines, then "PROG: error: ..."
        assert lines and lines[-1].startswith(f"{prog}: error: "), err
        return
    own = [line for line in lines if line.startswith((f"{prog}: ", "[", MPG123_NOTE))]
    assert own == lines, err  # nothing but the command's own lines (no stray warnings)
    if res.returncode == 1:
        assert any(line.startswith(f"{prog}: error: ") for line in lines), err


# ------------------------------------------------------------------ fractalsync-beats


def _option(flag: str, value: str | None) -> list[str]:
    """``--flag=value``, so that a value such as ``-inf`` is not taken for an option."""
    return [flag] if value is None else [f"{flag}={value}"]


@st.composite
def beats_argv(draw):
    """Inputs, --out, options and a stray argument of fractalsync-beats as specs
    (shrinkable); built by _build_beats. Three in four runs are well formed, so that they get
    past argparse to the files (one input, or several with --out; valid choices; values
    attached with ``=`` so that ``-inf`` is a value), the others are anything."""
    if draw(st.sampled_from(["well formed", "well formed", "well formed", "anything"])) \
            == "anything":
        return (draw(st.lists(paths(), max_size=3)),
                draw(st.one_of(st.none(), out_paths)),
                draw(st.lists(st.tuples(st.sampled_from(BEATS_OPTIONS), st.one_of(
                    st.none(), numbers, odd_strings)), max_size=4)),
                draw(st.one_of(st.none(), odd_strings)))
    inputs = draw(st.lists(paths(), min_size=1, max_size=3))
    out = draw(st.one_of(st.none(), out_paths)
               if len(inputs) == 1 else out_paths)
    options = [draw(st.tuples(st.sampled_from(["--json", "--csv", "--txt"]), st.none()))]
    options += draw(st.lists(st.one_of(
        st.tuples(st.sampled_from(["--force", "--online", "--quiet"]), st.none()),
        st.tuples(st.sampled_from(["--min-bpm", "--max-bpm", "--tempo-window"]),
                  st.one_of(numbers, st.floats(1, 400).map(repr))),
        st.tuples(st.just("--model"), st.sampled_from(["1", "2", "3", "ensemble"])),
    ), max_size=3))
    return inputs, out, options, None


def _build_beats(spec, root: Path, ing) -> list[str]:
    inputs, out, options, noise = spec
    argv = [_relative(_make(p, root, ing), root) for p in inputs]
    if out is not None:
        argv += _option("--out", _relative(_make(out, root, ing), root))
    for flag, value in options:
        argv += _option(flag, value)
    return argv if noise is None else [*argv, noise]


@pytest.fixture(scope="module")
def beats_home(ingredients, tmp_path_factory):
    """A FRACTALSYNC_HOME whose models are the session's (symlinked), and nothing else."""
    home = tmp_path_factory.mktemp("fuzz_home")
    (home / "models").symlink_to(ingredients["models"])
    return home


@FUZZ
@given(spec=beats_argv())
# a file name with an undecodable byte: soundfile encoded the str name strictly
@example(spec=([("file", "\udcff.wav", ("pcm", 1.0))], None, [("--json", None)], None))
# a 4-byte MP3 of zeros: libmpg123 (inside libsndfile) prints its own "Note: ..." lines
@example(spec=([("file", "?.wav", ("random", b"")), ("file", "?.mp3", ("random", b"\x00" * 4))],
               ("missing", "?.wav", None), [("--json", None)], None))
def test_fuzz_fractalsync_beats(spec, ingredients, beats_home):
    with tempfile.TemporaryDirectory(prefix="fuzz_beats.") as tmp:
        root = Path(tmp)
        argv = _build_beats(spec, root, ingredients)
        try:
            res = _run("fractalsync-beats", argv, root, beats_home)
            _check(res, "fractalsync-beats", beats_home)
        finally:
            shutil.rmtree(beats_home / "crash", ignore_errors=True)


# ------------------------------------------------------------------ fractalsync-export-beatnet

byte_flips = st.lists(st.tuples(st.integers(0, 2**21), st.integers(0, 255)), min_size=1,
                      max_size=8)
# weights files: cut, bytes changed, or its inner data.pkl / storages changed
weights_contents = st.one_of(
    st.tuples(st.just("cut"), st.floats(0, 1)),
    st.tuples(st.just("flip"), byte_flips),
    st.tuples(st.sampled_from(["pkl_flip", "storage_cut"]),
              st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1,
                       max_size=4)),
)
wheel_contents = st.one_of(
    st.tuples(st.just("wheel"), st.tuples(st.sampled_from([1, 2, 3]), weights_contents)),
    st.tuples(st.just("wheel_flip"), byte_flips),  # a whole wheel (model 1), bytes changed
    contents,
)


def _weights(kind, arg, ing) -> bytes:
    data = ing["weights"]
    if kind == "cut":
        return data[: int(len(data) * arg)]
    if kind == "flip":
        return _flipped(data, arg)
    buf = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(buf, "w") as dst:
        for info in src.infolist():
            member = src.read(info)
            is_pkl = info.filename.endswith("data.pkl")
            if kind == "pkl_flip" and is_pkl:
                member = _flipped(member, arg)
            elif kind == "storage_cut" and not is_pkl and "/data/" in info.filename:
                member = member[: arg[0][0] % (len(member) + 1)]
            dst.writestr(info, member)
    return buf.getvalue()


def _wheel_content(kind, arg, ing) -> bytes:
    """A wheel (zip, deflated) holding a weights file, the file or the wheel changed; or any
    other content."""
    if kind not in ("wheel", "wheel_flip"):
        return _content(kind, arg, ing)
    variant, weights = (1, ing["weights"]) if kind == "wheel_flip" else (
        arg[0], _weights(*arg[1], ing))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as whl:
        whl.writestr(WEIGHTS_MEMBER.format(variant), weights)
    return _flipped(buf.getvalue(), arg) if kind == "wheel_flip" else buf.getvalue()


@st.composite
def export_argv(draw):
    """Options of fractalsync-export-beatnet as specs; built by _build_export."""
    options = draw(st.lists(st.one_of(
        st.tuples(st.just("--wheel"), paths(file_content=wheel_contents)),
        st.tuples(st.just("--model"), st.one_of(st.sampled_from(["1", "2", "3", "all"]),
                                                odd_strings)),
        st.tuples(st.just("--out"), out_paths),
        st.tuples(st.sampled_from(["--force", "--allow-unpinned"]), st.none()),
        st.tuples(st.just("noise"), odd_strings),
    ), max_size=4))
    # mostly with a wheel: without one the converter asks pip, which PIP_NO_INDEX=1 fails
    wheel = draw(st.one_of(paths(file_content=wheel_contents), st.none()))
    return options, wheel


@pytest.fixture(scope="module")
def export_flags():
    """The optional flags this converter knows (--allow-unpinned is being added)."""
    res = subprocess.run([str(BIN / "fractalsync-export-beatnet"), "--help"],
                         capture_output=True, text=True, timeout=TIMEOUT_S)
    return {flag for flag in ("--allow-unpinned",) if flag in res.stdout}


def _build_export(spec, root: Path, ing, known: set[str]) -> list[str]:
    options, wheel = spec
    argv = []
    if wheel is not None:
        options = [("--wheel", wheel), *options]
    for flag, value in options:
        if flag == "noise":
            argv.append(value)
        elif flag in ("--wheel", "--out"):
            argv += _option(flag, _relative(_make(value, root, ing, _wheel_content), root))
        elif flag != "--allow-unpinned" or flag in known:
            argv += _option(flag, value)
    return argv


@FUZZ
@given(spec=export_argv())
# a damaged local header of data.pkl in the weights file: BadZipFile escaped torch_zip
@example(spec=([("--allow-unpinned", None)], ("file", "w.whl", ("wheel", (1, ("flip", [(0, 0)]))))))
def test_fuzz_fractalsync_export_beatnet(spec, ingredients, export_flags):
    with tempfile.TemporaryDirectory(prefix="fuzz_export.") as tmp:
        root = Path(tmp)
        home = root / "home"
        argv = _build_export(spec, root, ingredients, export_flags)
        _check(_run("fractalsync-export-beatnet", argv, root, home), "fractalsync-export-beatnet",
               home)


# ------------------------------------------------------------------ fractalsync-prepare

label_contents = st.one_of(
    contents,
    st.tuples(st.just("text"), st.text(NAME_CHARS + "0123456789.,\n\t{}[]:", max_size=200)),
    st.tuples(st.just("labels"), st.lists(st.tuples(st.one_of(st.floats(-5, 5), st.just(np.nan)),
                                                    st.sampled_from(["verse", "chorus",
                                                                     "intro", "end", "x"])),
                                          max_size=6)),
)


def _label_content(kind, arg, ing) -> bytes:
    if kind == "text":
        return arg.encode("utf-8", "surrogateescape")
    if kind == "labels":  # a CSV start,end,label with fuzzed (maybe bad) times
        rows, t = [], 0.0
        for dt, label in arg:
            rows.append(f"{t!r},{t + dt!r},{label}")
            t += dt
        return "\n".join(rows).encode()
    return _content(kind, arg, ing)


@st.composite
def prepare_argv(draw):
    """An audio dir and a label dir with matching and unmatched stems, --out, options."""
    stems = draw(st.lists(st.sampled_from(["a", "b", "c é"]), max_size=3, unique=True))
    audio = [(s, draw(st.sampled_from([".wav", ".flac", ".txt"])), draw(contents))
             for s in stems]
    labels = [(s, draw(st.sampled_from([".csv", ".json", ".txt"])), draw(label_contents))
              for s in stems if draw(st.booleans())]
    out = draw(st.one_of(st.just(None), out_paths))
    options = draw(st.lists(st.one_of(
        st.tuples(st.just("--jobs"), st.one_of(st.sampled_from(["1", "2"]), numbers)),
        st.tuples(st.just("--snap-s"), numbers),
        st.tuples(st.just("--source"), st.one_of(st.sampled_from(
            ["auto", "csv", "songformer-json", "harmonix"]), odd_strings)),
        st.tuples(st.just("--quiet"), st.none()),
        st.tuples(st.just("noise"), odd_strings),
    ), max_size=3))
    return audio, labels, out, options


def _build_prepare(spec, root: Path, ing) -> list[str]:
    audio, labels, out, options = spec
    adir, ldir = root / "audio", root / "labels"
    adir.mkdir()
    ldir.mkdir()
    for stem, suffix, content in audio:
        (adir / (stem + suffix)).write_bytes(_content(*content, ing))
    for stem, suffix, content in labels:
        (ldir / (stem + suffix)).write_bytes(_label_content(*content, ing))
    argv = ["audio", "--labels", "labels"]
    argv += _option("--out", "out" if out is None else _relative(_make(out, root, ing), root))
    for flag, value in options:
        argv += [value] if flag == "noise" else _option(flag, value)
    return argv


@settings(FUZZ, max_examples=max(EXAMPLES // 2, 1))
@given(spec=prepare_argv())
def test_fuzz_fractalsync_prepare(spec, ingredients, beats_home):
    with tempfile.TemporaryDirectory(prefix="fuzz_prepare.") as tmp:
        root = Path(tmp)
        argv = _build_prepare(spec, root, ingredients)
        try:
            _check(_run("fractalsync-prepare", argv, root, beats_home), "fractalsync-prepare",
                   beats_home)
        finally:
            shutil.rmtree(beats_home / "crash", ignore_errors=True)


# ------------------------------------------------------------------ examples/live_julia.py

LIVE_JULIA = Path(__file__).resolve().parents[1] / "examples" / "live_julia.py"
#: Spans kept short, so that a run renders at most a few tiny frames.
short = st.one_of(st.sampled_from(["0.2", "0.5", "1", "0", "-1", "nan", "inf", "1e-9", "x"]),
                  st.floats(0.0, 1.5).map(repr))


@st.composite
def live_julia_argv(draw):
    """live_julia.py without a display: an input (a file, the demo song, --mic or
    --list-devices) and options."""
    src = draw(st.sampled_from(["file", "file", "demo", "mic", "list"]))
    audio = draw(paths()) if src == "file" else None
    options = draw(st.lists(st.one_of(
        st.tuples(st.just("--out"), out_paths.map(lambda p: (p[0], p[1] + ".mp4", p[2]))),
        st.tuples(st.just("--out"), out_paths),
        st.tuples(st.sampled_from(["--seconds", "--start"]), short),
        st.tuples(st.just("--size"), st.one_of(st.sampled_from(
            ["32x18", "16x16", "15x9", "0x0", "8000x8000", "axb", "32x"]), odd_strings)),
        st.tuples(st.sampled_from(["--fps", "--latency-ms"]), st.one_of(
            st.sampled_from(["1", "24", "0", "-5"]), numbers)),
        st.tuples(st.sampled_from(["--renderer", "--structure", "--device"]), st.one_of(
            st.sampled_from(["gl", "numba", "model", "none", "0", "99"]), odd_strings)),
        st.tuples(st.sampled_from(["--overwrite", "--silent"]), st.none()),
        st.tuples(st.just("noise"), odd_strings),
    ), max_size=4))
    return src, audio, options


def _build_live_julia(spec, root: Path, ing) -> list[str]:
    src, audio, options = spec
    argv = ["--seconds=0.2", "--size=32x18", "--fps=10"]  # bounded unless the fuzz overrides
    if src == "file":
        argv += _option("--audio", _relative(_make(audio, root, ing), root))
    elif src in ("mic", "list"):
        argv.append("--mic" if src == "mic" else "--list-devices")
    for flag, value in options:
        if flag == "noise":
            argv.append(value)
        elif flag == "--out":
            argv += _option(flag, _relative(_make(value, root, ing), root))
        else:
            argv += _option(flag, value)
    return argv


@settings(FUZZ, max_examples=max(EXAMPLES // 2, 1))
@given(spec=live_julia_argv())
def test_fuzz_live_julia(spec, ingredients, beats_home):
    with tempfile.TemporaryDirectory(prefix="fuzz_live_julia.") as tmp:
        root = Path(tmp)
        argv = _build_live_julia(spec, root, ingredients)
        env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
        env.update(FRACTALSYNC_HOME=str(beats_home), PIP_NO_INDEX="1")
        try:
            res = subprocess.run([sys.executable, str(LIVE_JULIA), *argv], cwd=root, env=env,
                                 stdin=subprocess.DEVNULL, capture_output=True,
                                 timeout=TIMEOUT_S)
            _check(res, "live_julia.py", beats_home)
        finally:
            shutil.rmtree(beats_home / "crash", ignore_errors=True)


# ------------------------------------------------------------------ fractalsync-structure

STRUCTURE_OPTIONS = ["--json", "--csv", "--force", "--quiet", "--model", "--out"]


@st.composite
def structure_argv(draw):
    """Inputs, --out, options and a stray argument of fractalsync-structure as specs, built by
    _build_beats; three in four runs are well formed, as in beats_argv."""
    if draw(st.sampled_from(["well formed", "well formed", "well formed", "anything"])) \
            == "anything":
        return (draw(st.lists(paths(), max_size=3)),
                draw(st.one_of(st.none(), out_paths)),
                draw(st.lists(st.tuples(st.sampled_from(STRUCTURE_OPTIONS), st.one_of(
                    st.none(), numbers, odd_strings)), max_size=4)),
                draw(st.one_of(st.none(), odd_strings)))
    inputs = draw(st.lists(paths(), min_size=1, max_size=3))
    out = draw(st.one_of(st.none(), out_paths) if len(inputs) == 1 else out_paths)
    options = [draw(st.tuples(st.sampled_from(["--json", "--csv"]), st.none()))]
    options += draw(st.lists(st.one_of(
        st.tuples(st.sampled_from(["--force", "--quiet"]), st.none()),
        st.tuples(st.just("--model"), st.sampled_from(["1", "2", "3", "ensemble"])),
    ), max_size=2))
    return inputs, out, options, None


@settings(FUZZ, max_examples=max(EXAMPLES // 2, 1))
@given(spec=structure_argv())
@example(spec=([("file", "\udcff.wav", ("pcm", 1.0))], None, [("--csv", None)], None))
def test_fuzz_fractalsync_structure(spec, ingredients, beats_home):
    with tempfile.TemporaryDirectory(prefix="fuzz_structure.") as tmp:
        root = Path(tmp)
        argv = _build_beats(spec, root, ingredients)
        try:
            _check(_run("fractalsync-structure", argv, root, beats_home),
                   "fractalsync-structure", beats_home)
        finally:
            shutil.rmtree(beats_home / "crash", ignore_errors=True)
