"""Online tracker speed: filter step, the whole slow chain per 20 ms hop, file real-time factor.

Run: .venv/bin/python -m pytest benchmarks/bench_tracker.py --benchmark-only -s

Targets (issue 4, item 8):
* particle-filter step (1500 particles + the exact 9-state meter filter): p99 <= 40 us.
  BeatNet's own Python particle filter (1500 + 250 particles) costs ~1100 us per frame on this
  machine (FACTS.md section 3; an external figure, not re-measured here: BeatNet cannot be
  installed).  The same model written with vectorised numpy is measured in the same run.
* the slow chain per 20 ms hop (48 kHz input in 960-sample blocks: resample + front end + CRNN
  step + filter): p99 <= 150 us (< 1 % of the hop).
* offline-through-streaming: the 61 s demo file through ``online_beat_grid`` (decode, 1024-
  sample pushes through the live chain): real-time factor.
Each figure is printed with its share of the 20 ms hop.
"""

from __future__ import annotations

import itertools
import math
import time
from pathlib import Path

import numpy as np
import pytest

from fractalsync_dsp.frontend import BeatNetFrontEnd
from fractalsync_dsp.resample import StreamResampler, resample
from fractalsync_models import export_beatnet
from fractalsync_models.beatnet import BeatNetModel
from fractalsync_models.crnn import BeatNetCRNN
from fractalsync_tracking.beat_tracker import BeatTracker
from fractalsync_tracking.online_grid import online_beat_grid
from fractalsync_tracking.particle_filter import FilterConfig, ParticleFilter

HOP_US = 20_000.0
ROOT = Path(__file__).parent.parent
REF = ROOT / "tests" / "data" / "reference"
DEMO = ROOT / "data" / "audio" / "Kevin_MacLeod_-_Vibe_Ace.ogg"
BEATNET_PF_US = 1100.0


@pytest.fixture(scope="module")
def activations() -> np.ndarray:
    """3000 real CRNN frames (60 s): the two reference excerpts back to back."""
    return np.concatenate([np.load(REF / c / "act_m1.npy") for c in ("vibe_ace",
                                                                      "lets_go_fishin")])


@pytest.fixture(scope="module")
def crnn() -> BeatNetCRNN:
    (path,) = export_beatnet(models=1)
    return BeatNetCRNN(path=path)


def stats(us: np.ndarray) -> tuple[float, float]:
    p50, p99 = np.percentile(us, [50, 99])
    return float(p50), float(p99)


class NumpyFilter:
    """The stage-1 model of ParticleFilter in vectorised numpy (timing reference only)."""

    def __init__(self, cfg: FilterConfig, seed: int = 0) -> None:
        self.cfg = cfg
        self.rng = np.random.default_rng(seed)
        n = cfg.n_particles
        self.lo, self.hi = math.log(cfg.min_period), math.log(cfg.max_period)
        self.phi = self.rng.random(n)
        self.tau = np.exp(self.rng.uniform(self.lo, self.hi, n))
        self.w = np.full(n, 1.0 / n)
        self.grid = np.linspace(0.0, 4.0 * cfg.beat_width_frames, 65)
        g0 = np.exp(-0.5 * (self.grid / cfg.beat_width_frames) ** 2)
        floor = math.exp(-8.0)
        self.g = np.maximum((g0 - floor) / (1 - floor), 0.0)

    def step(self, a_beat: float, a_down: float) -> tuple[float, float]:
        cfg, n = self.cfg, self.cfg.n_particles
        p = self.phi + 1.0 / self.tau
        wrap = p >= 1.0
        k = int(wrap.sum())
        if k:
            old = self.tau[wrap]
            new = old * (1.0 + self.rng.laplace(0.0, 1.0 / cfg.tempo_lambda, k))
            jump = self.rng.random(k) < cfg.tempo_jump_prob
            new[jump] = np.exp(self.rng.uniform(self.lo, self.hi, int(jump.sum())))
            new = np.clip(new, cfg.min_period, cfg.max_period)
            p[wrap] = (p[wrap] - 1.0) * old / new
            self.tau[wrap] = new
        self.phi = p
        ratio = max(a_beat + a_down, 1e-6) / max(cfg.nonbeat_weight * (1 - a_beat - a_down), 1e-6)
        table = (self.g * ratio + 1.0 - self.g) ** cfg.obs_exponent
        d = np.minimum(p, 1.0 - p) * self.tau
        w = self.w * np.interp(d, self.grid, table, right=1.0)
        w /= w.sum()
        bins = ((np.log(self.tau) - self.lo) / (self.hi - self.lo) * 48).astype(int).clip(0, 47)
        hist = np.bincount(bins, w, 48)
        best = int(np.argmax(np.convolve(hist, [1, 2, 1], "same")))
        sel = np.abs(bins - best) <= 1
        ph = np.bincount((p[sel] * 32).astype(int).clip(0, 31), w[sel], 32)
        phase = (int(np.argmax(ph + np.roll(ph, 1) + np.roll(ph, -1) + ph)) + 0.5) / 32
        if 1.0 / np.sum(w * w) < cfg.ess_fraction * n:
            idx = np.searchsorted(np.cumsum(w), (self.rng.random() + np.arange(n)) / n)
            idx = np.minimum(idx, n - 1)
            self.phi, self.tau, w = self.phi[idx], self.tau[idx], np.full(n, 1.0 / n)
        self.w = w
        return phase, float(np.sum(w * self.tau))


def timed(step, acts: np.ndarray) -> np.ndarray:
    out = np.empty(len(acts))
    for i, (b, d) in enumerate(acts):
        t0 = time.perf_counter_ns()
        step(b, d)
        out[i] = (time.perf_counter_ns() - t0) / 1e3
    return out


def test_filter_step(benchmark, activations):
    acts = activations[:, :2].astype(np.float64)
    pf = ParticleFilter(seed=0)
    timed(pf.step, acts[:300])  # warm-up (compiled kernels are cached)
    pf.reset()
    times = timed(pf.step, acts)
    ref = timed(NumpyFilter(pf.config).step, acts[:1000])
    benchmark(pf.step, float(acts[100, 0]), float(acts[100, 1]))
    p50, p99 = stats(times)
    r50, r99 = stats(ref)
    benchmark.extra_info.update(p50_us=p50, p99_us=p99, hop_share_p99=p99 / HOP_US)
    print(
        f"\nParticleFilter.step ({pf.config.n_particles} particles + exact 9-state meter filter)"
        f" over {len(times)} frames: p50 {p50:.1f} us, p99 {p99:.1f} us = "
        f"{100 * p99 / HOP_US:.2f} % of the 20 ms hop (target p99 <= 40 us)"
        f"\nvectorised numpy version of the same stage-1 model: p50 {r50:.1f} us, p99 {r99:.1f}"
        f" us -> numba {r50 / p50:.1f}x faster at p50"
        f"\nBeatNet's Python particle filter: ~{BEATNET_PF_US:.0f} us per frame (external figure,"
        f" FACTS.md) -> {BEATNET_PF_US / p50:.0f}x"
    )


def stage_times(crnn, blocks) -> dict[str, np.ndarray]:
    """Wall time (us) of each stage of the chain, run stage by stage on every block: per push
    for the resampler and the front end, per frame (one call each) for the CRNN and the
    filter."""
    resampler = StreamResampler(48000, 22050)
    front_end = BeatNetFrontEnd()
    pf = ParticleFilter()
    crnn.reset()
    probs = np.empty(3, np.float32)
    out = {k: [] for k in ("resample", "front end", "CRNN", "filter")}
    for block in blocks:
        t0 = time.perf_counter_ns()
        y = resampler.push(block)
        t1 = time.perf_counter_ns()
        frames = front_end.push(y)
        t2 = time.perf_counter_ns()
        out["resample"].append((t1 - t0) / 1e3)
        out["front end"].append((t2 - t1) / 1e3)
        for frame in frames:
            t3 = time.perf_counter_ns()
            crnn.step(frame, probs)
            t4 = time.perf_counter_ns()
            pf.step(float(probs[0]), float(min(probs[1], 1.0 - probs[0])))
            out["filter"].append((time.perf_counter_ns() - t4) / 1e3)
            out["CRNN"].append((t4 - t3) / 1e3)
    return {k: np.array(v) for k, v in out.items()}


class CheckedChain:
    """The slow chain as composed before the analysis clock: every stage's public entry point,
    each validating its input again (StreamResampler.push -> BeatNetFrontEnd.push ->
    BeatNetCRNN.step -> ParticleFilter.step)."""

    def __init__(self, crnn) -> None:
        self.crnn = crnn
        self.resampler = StreamResampler(48000, 22050)
        self.front_end = BeatNetFrontEnd()
        self.pf = ParticleFilter()
        self.probs = np.empty(3, np.float32)

    def reset(self) -> None:
        self.crnn.reset()
        self.resampler.reset()
        self.front_end.reset()
        self.pf.reset()

    def push(self, block) -> int:
        """One block through the chain; returns the number of states (frames past the delay)."""
        n = 0
        for frame in self.front_end.push(self.resampler.push(block)):
            self.crnn.step(frame, self.probs)
            f = self.pf.step(float(self.probs[0]), float(min(self.probs[1], 1.0 - self.probs[0])))
            n += f.ref_frame >= 0
        return n


def _push_times(tracker: BeatTracker, blocks) -> tuple[np.ndarray, np.ndarray]:
    """Wall time (us) of each push and the number of frames it completed."""
    for b in blocks[:200]:  # warm-up
        tracker.push(b, 48000)
    tracker.reset()
    times = np.empty(len(blocks))
    frames = np.empty(len(blocks), np.int64)
    for i, b in enumerate(blocks):
        t0 = time.perf_counter_ns()
        frames[i] = len(tracker.push(b, 48000).states)
        times[i] = (time.perf_counter_ns() - t0) / 1e3
    return times, frames


def test_slow_chain_per_hop(benchmark, crnn):
    """48 kHz stereo input in 960-sample (20 ms) blocks through the whole chain."""
    mono = resample(np.load(REF / "vibe_ace" / "x22050.npy"), 22050, 48000)
    x = np.stack([mono, mono], axis=1)
    blocks = [x[i:i + 960] for i in range(0, len(x) - 960, 960)]
    tracker = BeatTracker(crnn=crnn)
    times, frames = _push_times(tracker, blocks)
    lq_times, lq_frames = _push_times(BeatTracker(crnn=crnn, quality="LQ"), blocks)
    export_beatnet(models="all")
    ens_times, ens_frames = _push_times(BeatTracker(crnn=BeatNetModel("ensemble")), blocks)
    # before/after, interleaved push by push in this run: the same chain through the public,
    # checked entry point of every stage (what BeatTracker did before the analysis clock)
    checked = CheckedChain(crnn)
    after = BeatTracker(crnn=crnn)
    for b in blocks[:200]:  # warm-up
        checked.push(b)
        after.push(b, 48000)
    checked.reset()
    after.reset()
    cmp_times = np.empty((2, len(blocks)))
    cmp_frames = np.empty(len(blocks), np.int64)
    for i, b in enumerate(blocks):
        t0 = time.perf_counter_ns()
        n_checked = checked.push(b)
        t1 = time.perf_counter_ns()
        cmp_frames[i] = len(after.push(b, 48000).states)
        t2 = time.perf_counter_ns()
        cmp_times[:, i] = (t1 - t0) / 1e3, (t2 - t1) / 1e3
        assert n_checked == cmp_frames[i]
    stages = stage_times(crnn, blocks)
    tracker.reset()
    it = itertools.cycle(blocks)
    benchmark(lambda: tracker.push(next(it), 48000))
    p50, p99 = stats(times)
    busy = frames > 0
    per_frame = np.repeat(times[busy] / frames[busy], frames[busy])  # one entry per 20 ms frame
    h50, h99 = stats(per_frame)
    l50, l99 = stats(lq_times)
    busy = ens_frames > 0
    e50, e99 = stats(np.repeat(ens_times[busy] / ens_frames[busy], ens_frames[busy]))
    busy = cmp_frames > 0
    before_hop = stats(np.repeat(cmp_times[0, busy] / cmp_frames[busy], cmp_frames[busy]))
    after_hop = stats(np.repeat(cmp_times[1, busy] / cmp_frames[busy], cmp_frames[busy]))
    benchmark.extra_info.update(p50_us=p50, p99_us=p99, hop_share_p99=p99 / HOP_US,
                                per_frame_p99_us=h99, checked_chain_p99_us=before_hop[1])
    lines = [
        f"\nslow chain per 20 ms hop (BeatTracker.push of 960 samples of 48 kHz stereo: "
        f"down-mix + resample + front end + CRNN step + filter) over {len(times)} pushes:",
        f"  per analysis hop (push time / frames it completed): p50 {h50:.1f} us, p99 {h99:.1f} us"
        f" = {100 * h99 / HOP_US:.2f} % of the 20 ms hop (target p99 <= 150 us)",
        f"  per push (soxr HQ, the default): p50 {p50:.1f} us, p99 {p99:.1f} us; HQ delivers in "
        f"bursts, so a push completes 0-2 frames (counts {np.bincount(frames).tolist()})",
        f"  per push with soxr LQ (steady, counts {np.bincount(lq_frames).tolist()}): "
        f"p50 {l50:.1f} us, p99 {l99:.1f} us",
        f"  before/after, interleaved in this run, per analysis hop (p50 / p99 us): stages "
        f"chained through their public checked entry points {before_hop[0]:.1f} / "
        f"{before_hop[1]:.1f}; BeatTracker (input checked once by the analysis clock, private "
        f"paths inside) {after_hop[0]:.1f} / {after_hop[1]:.1f}",
        f"  per analysis hop with the three-model ensemble (BeatTracker(model='ensemble')): "
        f"p50 {e50:.1f} us, p99 {e99:.1f} us",
        "  stages (p50 / p99 us; per push for resample and front end, per frame for CRNN and "
        "filter): " + ", ".join(
            f"{k} {stats(v)[0]:.1f} / {stats(v)[1]:.1f}" for k, v in stages.items()),
    ]
    print("\n".join(lines))


def test_file_through_the_live_chain(benchmark):
    export_beatnet(models=1)
    online_beat_grid(DEMO)  # warm-up: model load, kernels
    t0 = time.perf_counter()
    grid = online_beat_grid(DEMO)
    elapsed = time.perf_counter() - t0
    duration = 61.0
    benchmark.pedantic(online_beat_grid, args=(DEMO,), rounds=1, iterations=1)
    benchmark.extra_info.update(seconds=elapsed, realtime_factor=duration / elapsed)
    print(
        f"\nonline_beat_grid({DEMO.name}, {duration:.0f} s): {elapsed:.2f} s incl. decoding -> "
        f"{duration / elapsed:.0f}x real time; {len(grid.beats)} beats, tempo {grid.tempo:.1f}"
    )
