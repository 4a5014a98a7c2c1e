"""The live window's quality governor (examples/julia/governor.py), fed frame times: it never
leaves the ladder, steps down at once after slow frames, steps up only after a sustained margin,
settles under a constant cost and recovers when a load goes away."""

from __future__ import annotations

import math

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from examples.julia.governor import DEFAULT_LADDER, Level, QualityGovernor
from examples.julia.params import MAX_ITER_RANGE, JuliaParams

BUDGET = 1000.0 / 60.0

frame_ms = st.one_of(st.floats(0.0, 100.0), st.sampled_from([0.0, BUDGET, math.inf, 1e300]))
ladders = st.lists(
    st.tuples(st.integers(1, 3), st.one_of(st.none(), st.integers(*MAX_ITER_RANGE))),
    min_size=1, max_size=6).map(
    # make any list of (scale step, cap) a valid ladder: scales grow, caps fall at equal scale
    lambda rungs: _valid_ladder(rungs))


def _valid_ladder(rungs) -> tuple[Level, ...]:
    levels, scale, cap = [], 1, None
    for i, (step, new_cap) in enumerate(rungs):
        if i and (step > 1 or cap is None or cap <= MAX_ITER_RANGE[0]):
            scale += max(step - 1, 1)
            cap = new_cap
        elif i:
            cap = max(MAX_ITER_RANGE[0], min(cap - 1, new_cap or cap - 1))
        else:
            cap = new_cap
        levels.append(Level(scale, cap))
    return tuple(levels)


governors = st.builds(
    lambda ladder, budget, fracs, hold, settle, start: QualityGovernor(
        budget, ladder, start=start % len(ladder), down_frac=max(fracs), up_frac=min(fracs),
        hold_frames=hold, settle_frames=settle),
    ladders, st.floats(1.0, 100.0),
    st.tuples(st.floats(0.05, 1.0), st.floats(0.05, 1.0)).filter(lambda f: f[0] != f[1]),
    st.integers(1, 40), st.integers(1, 5), st.integers(0, 10))


def model_costs(ladder, width, height, fixed, per_sample, base_iters, deep_frac, max_iter,
                load=1.0) -> list[float]:
    """Frame cost (ms) of each level: a fixed part plus the samples times their mean iterations,
    ``base_iters`` for every sample and ``deep_frac`` of them running to the (capped) max_iter;
    all of it times ``load``."""
    costs = []
    for level in ladder:
        iters = min(max_iter, level.iter_cap or max_iter)
        costs.append(load * (fixed + per_sample * level.samples(width, height)
                             * (base_iters + deep_frac * iters)))
    return costs


cost_models = st.fixed_dictionaries(dict(
    width=st.integers(64, 1920), height=st.integers(36, 1080), fixed=st.floats(0.0, 5.0),
    per_sample=st.floats(1e-7, 1e-4), base_iters=st.floats(1.0, 60.0),
    deep_frac=st.floats(0.0, 1.0), max_iter=st.integers(*MAX_ITER_RANGE)))


def run(gov: QualityGovernor, costs, frames: int) -> list[int]:
    """Feed ``frames`` frames at the cost of the level each is drawn at; the levels drawn."""
    levels = []
    for _ in range(frames):
        levels.append(gov.level)
        gov.record(costs[gov.level])
    return levels


# --- Level -------------------------------------------------------------------------------------


@given(max_iter=st.integers(*MAX_ITER_RANGE),
       cap=st.one_of(st.none(), st.integers(*MAX_ITER_RANGE)))
def test_a_cap_clamps_max_iter_and_never_raises_it(max_iter, cap):
    params = JuliaParams(-0.8, 0.156, zoom=1.5, hue=0.3, max_iter=max_iter)
    got = Level(2, cap).apply(params)
    want = max_iter if cap is None else min(max_iter, cap)
    assert got.max_iter == want <= max_iter
    assert got == JuliaParams(**{**params.__dict__, "max_iter": want})  # nothing else changes


def test_level_samples_and_bad_levels():
    assert Level(1).samples(960, 540) == 960 * 540
    assert Level(2).samples(961, 541) == 481 * 271
    assert Level(4, 48).describe() == "scale 4, cap 48" and Level(1).describe() == "scale 1"
    for bad in (dict(scale=0), dict(scale=1.5), dict(scale=True),
                dict(scale=1, iter_cap=MAX_ITER_RANGE[0] - 1),
                dict(scale=1, iter_cap=MAX_ITER_RANGE[1] + 1), dict(scale=1, iter_cap=64.0)):
        with pytest.raises(ValueError, match="Level"):
            Level(**bad)


def test_default_ladder_is_valid_and_starts_at_full_quality():
    gov = QualityGovernor()
    assert gov.current == Level(1) and gov.level == 0
    assert gov.ladder == DEFAULT_LADDER and len(DEFAULT_LADDER) >= 4


@pytest.mark.parametrize(("kwargs", "match"), [
    (dict(budget_ms=0.0), "budget_ms"), (dict(budget_ms=math.nan), "budget_ms"),
    (dict(budget_ms=True), "budget_ms"), (dict(ladder=()), "ladder"),
    (dict(ladder=(Level(2), Level(1))), "larger scale"),
    (dict(ladder=(Level(1, 64), Level(1, 128))), "larger scale"),
    (dict(ladder=(Level(1), Level(1))), "larger scale"),
    (dict(ladder=("scale 1",)), "ladder"),
    (dict(down_frac=0.5, up_frac=0.6), "up_frac"), (dict(down_frac=1.2), "down_frac"),
    (dict(up_frac=0.0), "up_frac"), (dict(hold_frames=0), "hold_frames"),
    (dict(settle_frames=2.5), "settle_frames"), (dict(start=7), "start"),
    (dict(start=-1), "start")])
def test_bad_settings_are_clear_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        QualityGovernor(**kwargs)


@pytest.mark.parametrize("bad", [math.nan, -1.0, "5", None, True])
def test_bad_frame_times_are_clear_errors(bad):
    gov = QualityGovernor()
    with pytest.raises(ValueError, match="frame_ms"):
        gov.record(bad)
    assert gov.frames_at == [0] * len(DEFAULT_LADDER)


# --- the rules, on any frame times ---------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(gov=governors, times=st.lists(frame_ms, max_size=300))
@example(gov=QualityGovernor(), times=[math.inf] * 20 + [0.0] * 200)
@example(gov=QualityGovernor(start=6), times=[0.0] * 300)
def test_never_leaves_the_ladder_and_moves_one_level_at_a_time(gov, times):
    previous = gov.level
    for t in times:
        level = gov.record(t)
        assert level == gov.level and 0 <= level < len(gov.ladder)
        assert gov.current == gov.ladder[level]
        assert abs(level - previous) <= 1
        previous = level
    assert sum(gov.frames_at) == len(times)
    assert gov.summary().startswith("quality: ")


@settings(max_examples=200, deadline=None)
@given(gov=governors, times=st.lists(frame_ms, max_size=200),
       slow=st.floats(1.0001, 100.0))
def test_a_missed_frame_steps_down_at_once(gov, times, slow):
    for t in times:
        gov.record(t)
    level = gov.level
    after = gov.record(slow * gov.budget_ms)
    assert after == min(level + 1, len(gov.ladder) - 1)


SCALES_ONLY = (Level(1), Level(2), Level(3), Level(4))


@settings(max_examples=150, deadline=None)
@given(times=st.lists(frame_ms, max_size=100), start=st.integers(0, 3),
       hold=st.integers(1, 40))
def test_two_frames_near_the_budget_step_down(times, start, hold):
    """Two frames over down_frac x budget (within the budget) in a row: one level down. (A ladder
    of scales only: there a better level never costs less, so a slow frame cannot move it up.)"""
    gov = QualityGovernor(BUDGET, SCALES_ONLY, start=start, hold_frames=hold)
    for t in times:
        gov.record(t)
    near = (gov.down_ms + gov.budget_ms) / 2
    level = gov.level
    gov.record(near)
    gov.record(near)
    assert gov.level == min(level + 1, len(SCALES_ONLY) - 1)


@settings(max_examples=200, deadline=None)
@given(gov=governors, times=st.lists(frame_ms, max_size=400))
@example(gov=QualityGovernor(start=3), times=[1.0] * 400)
def test_steps_up_only_after_a_sustained_margin(gov, times):
    """Every move up comes after at least hold_frames frames at the level, their 90th
    percentile times the smallest cost ratio the levels allow under up_frac x budget."""
    since: list[float] = []
    for t in times:
        level = gov.level
        since.append(t)
        gov.record(t)
        if gov.level < level:
            assert len(since) >= gov.hold_frames
            low = gov.ratio_bounds[gov.level][0]
            recent = sorted(since[-gov.hold_frames:])
            assert recent[math.ceil(0.9 * len(recent)) - 1] * low < gov.up_ms
        if gov.level != level:
            since = []


@settings(max_examples=150, deadline=None)
@given(model=cost_models, start=st.integers(0, len(DEFAULT_LADDER) - 1))
@example(model=dict(width=960, height=540, fixed=2.0, per_sample=2e-5, base_iters=20.0,
                    deep_frac=0.3, max_iter=256), start=0)
def test_no_oscillation_under_a_constant_cost(model, start):
    """The same cost every frame at each level: it settles within a few moves and stays."""
    costs = model_costs(DEFAULT_LADDER, **model)
    gov = QualityGovernor(BUDGET, DEFAULT_LADDER, start=start)
    levels = run(gov, costs, 3000)
    assert len(set(levels[1000:])) == 1, f"still moving: {gov.summary()}"
    assert gov.changes <= 2 * len(DEFAULT_LADDER)
    settled = levels[-1]
    if settled < len(DEFAULT_LADDER) - 1:
        assert costs[settled] <= gov.budget_ms  # where it stays, it fits


@settings(max_examples=150, deadline=None)
@given(model=cost_models, load=st.floats(1.5, 8.0))
@example(model=dict(width=960, height=540, fixed=1.0, per_sample=1.5e-5, base_iters=25.0,
                    deep_frac=0.2, max_iter=256), load=3.0)
def test_recovers_after_the_load_goes_away(model, load):
    """Heavy load (every level ``load`` x dearer) for 10 s, then none: it steps down, and then
    back up to a level that fits, whose better neighbour lacks the margin."""
    light = model_costs(DEFAULT_LADDER, **model)
    heavy = model_costs(DEFAULT_LADDER, **model, load=load)
    gov = QualityGovernor(BUDGET, DEFAULT_LADDER)
    run(gov, heavy, 600)
    under_load = gov.level
    levels = run(gov, light, 1500)
    final = levels[-1]
    assert len(set(levels[-500:])) == 1
    assert final <= under_load
    if final < len(DEFAULT_LADDER) - 1:
        assert light[final] <= gov.budget_ms
    if final > 0:
        assert light[final - 1] >= gov.up_ms  # the level above has no margin to climb to


def test_full_quality_when_it_fits_and_dropped_then_restored_around_a_spike_of_load():
    """A concrete run: every level fits (full quality throughout), then 2 s of a 4x load, then
    none; the picture is back at full quality within a second of the load going away."""
    costs = [6.0, 5.0, 2.0, 1.8, 1.5, 0.9, 0.6]
    gov = QualityGovernor()
    assert set(run(gov, costs, 300)) == {0}
    run(gov, [4 * c for c in costs], 120)
    assert gov.level >= 2  # 24 ms and 20 ms do not fit: at least scale 2
    back = run(gov, costs, 120)
    assert back[-1] == 0 and back.index(0) <= 2 * gov.hold_frames
