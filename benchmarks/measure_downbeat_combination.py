"""How to combine the three BeatNet models' beat and downbeat evidence: a measurement.

Run: .venv/bin/python benchmarks/measure_downbeat_combination.py [--seeds 3] [--no-online]

A plain script (not collected by pytest). For every corpus below and every setting (each model
alone, the combination rules of :mod:`fractalsync_models.beatnet`, and the losing candidates
defined here with numpy), it decodes the combined activations offline
(:func:`~fractalsync_tracking.beat_grid.grid_from_activations`) and online
(:func:`~fractalsync_tracking.particle_filter.track_activations`, seeds 0..S-1, averaged) and
scores beat F and downbeat F (:func:`fractalsync_tracking.metrics.evaluate`: +-70 ms, beats
before 5 s ignored). It prints a mean per corpus and setting, then the per-item downbeat F of
the items where the settings disagree most.

Corpora and why their ground truth holds:

* ``reference``: the two 30 s excerpts of real recordings (tests/data/reference), the torch
  CRNN outputs stored there, scored against BeatNet's own DBN on model 1 (pseudo ground truth:
  it favours model 1 by construction, so a rule that matches model 1 here is doing well).
* ``synthetic``: the standard synthetic set (18 drum/bass items, exact annotations).
* ``loops``: 16 loops rendered here with exact annotations (every sound placed at its annotated
  sample; :data:`LOOPS`): waltzes (bass on 1, chords on 2 and 3; one kind with a soft bowed bass
  under louder chords and a melody, one with kick on 1 and light snare on 2 and 3), 4/4 rock
  with a distorted power chord per bar, drum-and-bass two-step and Amen-style breaks at 165-176
  BPM, four-on-the-floor house (identical kicks; a chord stab marks beat 1) and kick-only 4/4
  loops whose beat 1 is accented.
* ``808kick``: BeatNet's test clip ``808kick120bpm.mp3`` from the wheel the converter downloads,
  tiled 3x to 30 s. Its 20 kicks are identical (correlation 0.9998 between any two) and start
  at exactly ``k * 22050`` samples at 44.1 kHz (cross-correlation lag 0 for each), so the beats
  are ``k * 0.5`` s. Nothing in the audio marks a bar; the downbeats are a convention (the clip
  starts with beat 1 and holds 5 bars of 4/4), so its downbeat F only shows whether a setting
  keeps placing downbeats at all on an accent-free kick loop.

CRNN activations are cached per item (key: the audio's hash) in
``$TMPDIR/fractalsync_downbeat_combination`` so reruns only decode.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fractalsync_models import beatnet  # noqa: E402
from fractalsync_models.training.synth import synth_set  # noqa: E402
from fractalsync_tracking.beat_grid import grid_from_activations  # noqa: E402
from fractalsync_tracking.metrics import evaluate  # noqa: E402
from fractalsync_tracking.particle_filter import track_activations  # noqa: E402

REF = ROOT / "tests" / "data" / "reference"
CACHE = Path(tempfile.gettempdir()) / "fractalsync_downbeat_combination"
SR = 22050
FPS = 50.0
EPS = 1e-9


# ------------------------------------------------------------------------------ settings


def _split(stack):
    """Per member: beat mass ``s = b + d`` and downbeat share ``r = d / (b + d)``."""
    s = stack[:, :, 0] + stack[:, :, 1]
    r = stack[:, :, 1] / np.maximum(s, EPS)
    return s, r


def _join(s, r):
    """Rows ``[s (1 - r), s r, 1 - s]`` from a beat mass and a downbeat share."""
    s = np.clip(s, 0.0, 1.0)
    return np.stack([s * (1.0 - r), s * r, 1.0 - s], axis=1).astype(np.float32)


def _logit_pool(r, weights=None):
    """Log-opinion pool of binary probabilities ``r`` (M, T) with member weights (M, T)."""
    r = np.clip(r, 1e-6, 1.0 - 1e-6)
    z = np.log(r) - np.log1p(-r)
    w = np.ones_like(r) if weights is None else weights
    z = (w * z).sum(0) / np.maximum(w.sum(0), EPS)
    return 1.0 / (1.0 + np.exp(-z))


def cand_share_m1(stack):
    """Per-output choice: beat mass = members' mean, downbeat share = model 1's."""
    s, r = _split(stack)
    return _join(s.mean(0), r[0])


def cand_share_logit(stack):
    """Beat mass = mean; downbeat share = log-opinion pool (mean logit) of the shares."""
    s, r = _split(stack)
    return _join(s.mean(0), _logit_pool(r))


def cand_share_logit_w(stack):
    """Beat mass = mean; downbeat share = mean logit weighted by each member's beat mass."""
    s, r = _split(stack)
    return _join(s.mean(0), _logit_pool(r, s))


def cand_split_geo(stack):
    """Beat mass = log-opinion pool of the members' beat masses (beat vs no beat); downbeat
    share = plain mean of the shares (as split_mean)."""
    s, r = _split(stack)
    return _join(_logit_pool(s), r.mean(0))


def cand_share_w2(stack):
    """Beat mass = mean; downbeat share = mean of the shares weighted by beat mass squared."""
    s, r = _split(stack)
    w = s * s
    return _join(s.mean(0), (w * r).sum(0) / np.maximum(w.sum(0), EPS))


def cand_share_max(stack):
    """Beat mass = mean; downbeat share = the largest member share (any member's meter cue)."""
    s, r = _split(stack)
    return _join(s.mean(0), r.max(0))


def cand_share_decisive(stack):
    """Beat mass = mean; downbeat share of the member whose share is furthest from 1/2,
    weighted by its beat mass (the most decided member with beat evidence)."""
    s, r = _split(stack)
    score = np.abs(r - 0.5) * s
    pick = np.argmax(score, axis=0)
    return _join(s.mean(0), np.take_along_axis(r, pick[None], 0)[0])


def cand_entropy(stack):
    """Mixture weighted per frame by each member's confidence ``1 - H / log 3``."""
    p = np.clip(stack.astype(np.float64), EPS, 1.0)
    h = -(p * np.log(p)).sum(-1) / np.log(3.0)
    w = np.maximum(1.0 - h, 1e-6)
    return ((w[..., None] * stack).sum(0) / w.sum(0)[..., None]).astype(np.float32)


def cand_share_rms(stack):
    """Beat mass = mean; downbeat share = root-mean-square of the shares (between mean, max)."""
    s, r = _split(stack)
    return _join(s.mean(0), np.sqrt((r ** 2).mean(0)))


def _single(k):
    return lambda stack: stack[k]


def _rule(name):
    return lambda stack: beatnet.combine(stack, name)


def settings():
    """Name -> function (M=3, T, 3) -> (T, 3)."""
    out = {"model 1": _single(0), "model 2": _single(1), "model 3": _single(2)}
    for name in beatnet.COMBINATION_RULES:
        out[f"ens {name}"] = _rule(name)
    candidates = {
        "ens share_m1": cand_share_m1,
        "ens share_logit": cand_share_logit,
        "ens share_logit_w": cand_share_logit_w,
        "ens split_geo": cand_split_geo,
        "ens share_w2": cand_share_w2,
        "ens share_max": cand_share_max,
        "ens share_decisive": cand_share_decisive,
        "ens share_rms": cand_share_rms,
        "ens entropy": cand_entropy,
    }
    for name, fn in candidates.items():
        if name.removeprefix("ens ") not in beatnet.COMBINATION_RULES:
            out[name] = fn
    return out


# ------------------------------------------------------------------------------ rendering


def _t(seconds):
    return np.arange(int(round(seconds * SR))) / SR


def _noise(rng, n):
    return rng.standard_normal(n)


def _lowpass(x, a):
    """One-pole low-pass, coefficient ``a`` in (0, 1)."""
    from scipy.signal import lfilter

    return lfilter([1.0 - a], [1.0, -a], x)


def kick_sound(rng, decay=0.15, f0=160.0, f1=48.0):
    t = _t(0.45)
    f = f1 + (f0 - f1) * np.exp(-t / 0.025)
    body = np.sin(2 * np.pi * np.cumsum(f) / SR) * np.exp(-t / decay)
    return body + 0.25 * _noise(rng, t.size) * np.exp(-t / 0.003)


def snare_sound(rng):
    t = _t(0.3)
    n = _noise(rng, t.size)
    n = n - _lowpass(n, 0.85)  # crude high-pass: the rattle
    n = n / np.abs(n).max()
    body = np.sin(2 * np.pi * 190 * t) + 0.5 * np.sin(2 * np.pi * 330 * t)
    return 0.9 * n * np.exp(-t / 0.09) + 0.6 * body * np.exp(-t / 0.05)


def hat_sound(rng, decay=0.02):
    t = _t(0.15)
    n = _noise(rng, t.size)
    for _ in range(2):
        n = n - _lowpass(n, 0.6)
    return n / np.abs(n).max() * np.exp(-t / decay)


def tone(freqs, seconds, decay, attack=0.004, bright=1.0, inharm=0.0):
    """Plucked/struck tone: harmonics 1..8 of each frequency, decaying faster when higher."""
    t = _t(seconds)
    x = np.zeros(t.size)
    for f in freqs:
        for h in range(1, 9):
            fh = f * h * np.sqrt(1.0 + inharm * h * h)
            if fh > 0.45 * SR:
                break
            x += (bright ** (h - 1)) / h * np.sin(2 * np.pi * fh * t) * np.exp(-t * h / decay)
    env = np.minimum(1.0, t / attack) * np.clip((seconds - t) / 0.02, 0.0, 1.0)
    return x * env / max(1, len(freqs))


def place(out, sound, at, gain):
    i = int(round(at * SR))
    n = min(sound.size, out.size - i)
    if i >= 0 and n > 0:
        out[i:i + n] += gain * sound[:n]


def midi(n):
    return 440.0 * 2.0 ** ((n - 69) / 12.0)


# Chord roots (MIDI) of a I-IV-V-I style progression, and triads on them.
PROGRESSION = (48, 53, 55, 48, 45, 50, 55, 48)


def triad(root, minor=False):
    return [midi(root + 12), midi(root + 12 + (3 if minor else 4)), midi(root + 19)]


def render_loop(kind, bpm, meter, seconds=30.0, first=0.4, seed=0):
    """One rendered groove and its exact beats and downbeats (name selects the pattern)."""
    rng = np.random.default_rng([seed, sum(map(ord, kind)), int(bpm)])
    ibi = 60.0 / bpm
    beats = np.arange(first, seconds - 0.05, ibi)
    pos = np.arange(beats.size) % meter + 1
    out = np.zeros(int(round(seconds * SR)))
    kick, snare, hat = kick_sound(rng), snare_sound(rng), hat_sound(rng)
    for k, (t, p) in enumerate(zip(beats, pos, strict=True)):
        bar = k // meter
        root = PROGRESSION[bar % len(PROGRESSION)]
        if kind in ("waltz", "waltz_drums"):
            if p == 1:
                place(out, tone([midi(root - 12)], 0.9 * ibi * 3, 0.8, bright=0.6), t, 0.9)
            else:
                place(out, tone(triad(root), 0.8 * ibi, 0.35, bright=0.5, inharm=1e-4), t, 0.5)
            if kind == "waltz_drums":
                if p == 1:
                    place(out, kick, t, 0.9)
                else:
                    place(out, snare, t, 0.25)
                place(out, hat, t + 0.5 * ibi, 0.12)
        elif kind == "waltz_soft":
            # a soft bowed bass on 1, louder bright chords on 2 and 3, a melody (the "oom" is
            # the quietest onset of the bar: only harmony marks beat 1)
            if p == 1:
                place(out, tone([midi(root - 12)], 2.8 * ibi, 2.0, attack=0.04, bright=0.4),
                      t, 0.5)
            else:
                place(out, tone(triad(root), 0.6 * ibi, 0.3, bright=0.8, inharm=1e-4), t, 0.7)
            step = (0, 4, 7, 12, 7, 4)[(k * 5) % 6]
            if p != 2 or bar % 2:
                place(out, tone([midi(root + 24 + step)], 0.9 * ibi, 0.6, attack=0.01,
                                bright=0.5), t, 0.35)
        elif kind == "rock":
            if p in (1, 3):
                place(out, kick, t, 1.0 if p == 1 else 0.8)
            if p in (2, 4):
                place(out, snare, t, 0.8)
            if p == 3:
                place(out, kick, t + 0.5 * ibi, 0.6)
            place(out, hat, t, 0.3)
            place(out, hat, t + 0.5 * ibi, 0.22)
            if p == 1:  # a distorted power chord per bar
                chord = tone([midi(root), midi(root + 7)], meter * ibi * 0.95, 1.5, bright=0.8)
                place(out, np.tanh(3.0 * chord) * 0.5, t, 0.6)
                if bar % 4 == 0:
                    place(out, hat_sound(rng, decay=0.6), t, 0.35)
        elif kind == "dnb":
            # two-step: kick 1 and the "and" of 3, snare 2 and 4, ghost snares, 16th hats
            if p == 1:
                place(out, kick, t, 1.0)
                place(out, tone([midi(root - 24)], meter * ibi * 0.9, 1.2, bright=0.3), t, 0.8)
            if p == 3:
                place(out, kick, t + 0.5 * ibi, 0.85)
            if p in (2, 4):
                place(out, snare, t, 0.9)
            if p == 4:
                place(out, snare, t + 0.75 * ibi, 0.2)
            if p == 2:
                place(out, snare, t + 0.5 * ibi, 0.15)
            for q in range(4):
                place(out, hat, t + q * ibi / 4, 0.18 if q % 2 == 0 else 0.1)
        elif kind == "amen":
            # a syncopated break in eighths: kick 1, 1+, 3+ (and 3 every other bar), snare 2,
            # 4, ghost notes on 2+ and 4+, ride on every eighth, a long bass note per bar
            eighths = {1: ("k", "k"), 2: ("s", "g"), 3: ("", "k"), 4: ("s", "g")}[p]
            if p == 3 and bar % 2:
                eighths = ("k", "k")
            for q, hit in enumerate(eighths):
                at = t + 0.5 * q * ibi
                if hit == "k":
                    place(out, kick, at, 0.9)
                elif hit == "s":
                    place(out, snare, at, 0.85)
                elif hit == "g":
                    place(out, snare, at, 0.2)
                place(out, hat_sound(rng, decay=0.12), at, 0.12)
            if p == 1:
                place(out, tone([midi(root - 24)], meter * ibi * 0.95, 3.0, attack=0.02,
                                bright=0.5), t, 0.6)
        elif kind == "house":
            # four-on-the-floor identical kicks, off-beat hats, a chord stab on each bar's 1
            place(out, kick, t, 1.0)
            place(out, hat, t + 0.5 * ibi, 0.3)
            if p == 1:
                place(out, tone(triad(root, minor=True), 0.4 * ibi, 0.25, bright=0.7), t, 0.5)
        elif kind == "kick":
            place(out, kick, t, 1.0 if p == 1 else 0.75)
        else:
            raise ValueError(kind)
    out = out / np.abs(out).max() * 0.8 + 1e-3 * rng.standard_normal(out.size)
    return out.astype(np.float32), beats, beats[pos == 1]


LOOPS = (
    ("waltz_3-4_84bpm", "waltz", 84, 3),
    ("waltz_3-4_144bpm", "waltz", 144, 3),
    ("waltz_soft_3-4_96bpm", "waltz_soft", 96, 3),
    ("waltz_soft_3-4_132bpm", "waltz_soft", 132, 3),
    ("waltz_soft_3-4_174bpm", "waltz_soft", 174, 3),
    ("waltz_drums_3-4_104bpm", "waltz_drums", 104, 3),
    ("waltz_drums_3-4_156bpm", "waltz_drums", 156, 3),
    ("rock_4-4_100bpm", "rock", 100, 4),
    ("rock_4-4_138bpm", "rock", 138, 4),
    ("dnb_4-4_172bpm", "dnb", 172, 4),
    ("dnb_4-4_176bpm", "dnb", 176, 4),
    ("amen_4-4_165bpm", "amen", 165, 4),
    ("amen_4-4_174bpm", "amen", 174, 4),
    ("house_4-4_124bpm", "house", 124, 4),
    ("kick_4-4_126bpm", "kick", 126, 4),
    ("kick_4-4_95bpm", "kick", 95, 4),
)


def kick808():
    """BeatNet's 808 kick clip at 22050 Hz, tiled to 30 s, with its beats (see docstring)."""
    from fractalsync_dsp.audio_io import load_audio
    from fractalsync_dsp.resample import resample, to_mono
    from fractalsync_models.export_beatnet import fetch_wheel

    member = "BeatNet/test_data/808kick120bpm.mp3"
    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / "808kick120bpm.mp3"
    if not path.exists():
        path.write_bytes(zipfile.ZipFile(fetch_wheel()).read(member))
    x, sr = load_audio(path)
    y = resample(to_mono(x), sr, SR)
    y = np.tile(y, 3)
    beats = np.arange(60) * 0.5
    return y.astype(np.float32), beats, beats[::4]


# ------------------------------------------------------------------------------ activations


def member_activations(x):
    """(3, T, 3) float32 CRNN outputs of models 1, 2, 3 on 22050 Hz audio (cached)."""
    key = hashlib.sha1(np.ascontiguousarray(x, np.float32).tobytes()).hexdigest()[:20]
    path = CACHE / f"{key}.npy"
    if path.exists():
        return np.load(path)
    from fractalsync_dsp.frontend import BeatNetFrontEnd
    from fractalsync_models.crnn import BeatNetCRNN

    feats = BeatNetFrontEnd().features(x)
    acts = np.stack([BeatNetCRNN(variant=v).run(feats) for v in (1, 2, 3)])
    CACHE.mkdir(parents=True, exist_ok=True)
    np.save(path, acts)
    return acts


def corpora(which):
    """{corpus: [(item name, (3, T, 3) activations, ref beats, ref downbeats)]}"""
    out = {}
    if "reference" in which:
        items = []
        for clip in ("vibe_ace", "lets_go_fishin"):
            dbn = np.loadtxt(REF / clip / "beatnet_dbn.txt")
            acts = np.stack([np.load(REF / clip / f"act_m{m}.npy") for m in (1, 2, 3)])
            items.append((clip, acts.astype(np.float32), dbn[:, 0], dbn[dbn[:, 1] == 1, 0]))
        out["reference"] = items
    if "synthetic" in which:
        out["synthetic"] = [(it.name, member_activations(it.audio), it.beats, it.downbeats)
                            for it in synth_set(sample_rate=SR)]
    if "loops" in which:
        items = []
        for name, kind, bpm, meter in LOOPS:
            x, b, d = render_loop(kind, bpm, meter)
            items.append((name, member_activations(x), b, d))
        out["loops"] = items
    if "808kick" in which:
        x, b, d = kick808()
        out["808kick"] = [("808kick120bpm_x3", member_activations(x), b, d)]
    return out


# ------------------------------------------------------------------------------ scoring


def score(act, ref_b, ref_d, seeds):
    """(offline beat F, offline downbeat F, online beat F, online downbeat F)."""
    grid = grid_from_activations(act)
    off = evaluate(ref_b, np.array(grid.beats), ref_d, np.array(grid.downbeats))
    on_b, on_d = [], []
    for seed in range(seeds):
        tr = track_activations(act, seed=seed)
        m = evaluate(ref_b, tr.times, ref_d, tr.times[tr.is_downbeat])
        on_b.append(m["beat_f"])
        on_d.append(m["downbeat_f"])
    nan = float("nan")
    return (off["beat_f"], off["downbeat_f"], float(np.mean(on_b)) if seeds else nan,
            float(np.mean(on_d)) if seeds else nan)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3, help="online seeds per item (0: offline only)")
    ap.add_argument("--corpora", default="reference,synthetic,loops,808kick")
    ap.add_argument("--only", default="", help="comma-separated setting names to run")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    data = corpora(args.corpora.split(","))
    print(f"activations ready in {time.perf_counter() - t0:.1f} s (cache {CACHE})")
    setts = settings()
    if args.only:
        keep = set(args.only.split(","))
        setts = {k: v for k, v in setts.items() if k in keep}
    results = {}  # (corpus, setting) -> (items, 4)
    for corpus, items in data.items():
        for name, fn in setts.items():
            results[corpus, name] = np.array([score(fn(a), b, d, args.seeds)
                                              for _, a, b, d in items])
    print(f"scored in {time.perf_counter() - t0:.1f} s; online: mean of seeds 0..{args.seeds - 1}")
    print("\nmean beat F / downbeat F per corpus (+-70 ms, after 5 s); offline = Viterbi grid, "
          "online = particle filter")
    head = f"{'setting':20s}" + "".join(f" | {c:^23s}" for c in data)
    print(head)
    print(f"{'':20s}" + " | off b  off d  on b  on d" * len(data))
    for name in setts:
        cells = []
        for corpus in data:
            m = results[corpus, name].mean(axis=0)
            cells.append(f" | {m[0]:.3f} {m[1]:.3f} {m[2]:.3f} {m[3]:.3f}")
        print(f"{name:20s}" + "".join(cells))
    print("\nper item, downbeat F offline / online (real and rendered loops; synthetic below 0.8)")
    for corpus, items in data.items():
        for i, (item, *_rest) in enumerate(items):
            rows = {n: results[corpus, n][i] for n in setts}
            if corpus == "synthetic" and min(r[1] for r in rows.values()) >= 0.8:
                continue
            cells = " ".join(f"{r[1]:.2f}/{r[3]:.2f}" for r in rows.values())
            print(f"  {item:26s} {cells}")
    print("  columns: " + ", ".join(setts))


if __name__ == "__main__":
    main()
