"""The numba bar-pointer Viterbi against a plain dense numpy Viterbi on small random HMMs."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fractalsync_tracking.viterbi import (
    BarPointerModel,
    observation_log_densities,
    tempo_transition_matrix,
    viterbi_decode,
)

# ---------------------------------------------------------------- numpy reference


def _states(model):
    """List of (meter index, tempo index, position) and each state's observation class."""
    states, classes = [], []
    for mi, bpb in enumerate(model.meters):
        for k, iv in enumerate(model.intervals):
            for p in range(bpb * iv):
                states.append((mi, k, p))
                if p % iv < model.beat_widths[k]:
                    classes.append(2 if p < iv else 1)
                else:
                    classes.append(0)
    return states, np.array(classes)


def _dense(model):
    """Dense log transition matrix, initial log distribution, classes, states."""
    states, classes = _states(model)
    index = {s: n for n, s in enumerate(states)}
    n = len(states)
    log_a = np.full((n, n), -np.inf)
    for s, (mi, k, p) in enumerate(states):
        iv = model.intervals[k]
        bpb = model.meters[mi]
        if (p + 1) % iv:
            log_a[s, index[(mi, k, p + 1)]] = 0.0
        else:
            nb = ((p // iv) + 1) % bpb
            for j, jv in enumerate(model.intervals):
                log_a[s, index[(mi, j, nb * jv)]] = model.log_transitions[k, j]
    sizes = {mi: bpb * int(np.sum(model.intervals)) for mi, bpb in enumerate(model.meters)}
    log_init = np.array([-np.log(len(model.meters)) - np.log(sizes[mi]) for mi, _, _ in states])
    return log_a, log_init, classes, states, index


def _reference_viterbi(model, log_obs):
    """Best log probability overall and per meter, by the textbook dense recursion."""
    log_a, log_init, classes, states, _ = _dense(model)
    delta = log_init + log_obs[0, classes]
    for t in range(1, log_obs.shape[0]):
        delta = np.max(delta[:, None] + log_a, axis=0) + log_obs[t, classes]
    meter_of = np.array([s[0] for s in states])
    per_meter = np.array([delta[meter_of == mi].max() for mi in range(len(model.meters))])
    return delta.max(), per_meter


def _path_log_prob(model, path, log_obs):
    """Log probability of a decoded path under the dense model."""
    log_a, log_init, classes, _, index = _dense(model)
    mi = model.meters.index(path.meter)
    pairs = zip(path.tempo_index, path.position, strict=True)
    ids = [index[(mi, int(k), int(p))] for k, p in pairs]
    lp = log_init[ids[0]] + log_obs[0, classes[ids[0]]]
    for t in range(1, len(ids)):
        lp += log_a[ids[t - 1], ids[t]] + log_obs[t, classes[ids[t]]]
    return lp


# ---------------------------------------------------------------- random models


@st.composite
def _models_and_obs(draw):
    intervals = sorted(draw(st.sets(st.integers(1, 6), min_size=1, max_size=4)))
    meters = tuple(sorted(draw(st.sets(st.integers(1, 4), min_size=1, max_size=3))))
    k = len(intervals)
    widths = [draw(st.integers(1, iv)) for iv in intervals]
    raw = np.array(draw(st.lists(st.floats(-8, 0), min_size=k * k, max_size=k * k))).reshape(k, k)
    mask = np.array(draw(st.lists(st.booleans(), min_size=k * k, max_size=k * k))).reshape(k, k)
    mask[np.arange(k), np.arange(k)] = True  # every tempo reachable
    log_t = np.where(mask, raw, -np.inf)
    model = BarPointerModel(np.array(intervals, dtype=np.int64), meters, log_t,
                            np.array(widths, dtype=np.int64), 50.0)
    n = draw(st.integers(1, 14))
    obs = np.array(draw(st.lists(st.floats(-12, 0), min_size=3 * n, max_size=3 * n))).reshape(n, 3)
    return model, obs


@settings(deadline=None, max_examples=50)
@given(_models_and_obs())
def test_kernel_matches_dense_reference(case):
    model, log_obs = case
    path = viterbi_decode(model, log_obs)
    best, per_meter = _reference_viterbi(model, log_obs)
    assert path.log_prob == pytest.approx(best, abs=1e-9)
    np.testing.assert_allclose(path.meter_log_probs, per_meter, atol=1e-9)
    # the returned path is a real path of the model and scores the optimum
    assert path.tempo_index.shape == path.position.shape == (log_obs.shape[0],)
    assert _path_log_prob(model, path, log_obs) == pytest.approx(best, abs=1e-9)


@settings(deadline=None, max_examples=25)
@given(st.integers(1, 40), st.integers(0, 2**31 - 1))
def test_activation_model_matches_reference(n, seed):
    """Realistic transitions (exponential tempo model) and activation-derived observations."""
    rng = np.random.default_rng(seed)
    model = BarPointerModel.from_bpm(fps=10.0, min_bpm=75, max_bpm=150, meters=(2, 3),
                                     transition_lambda=10.0, observation_lambda=3)
    act = rng.dirichlet([1, 1, 3], size=n)
    log_obs = observation_log_densities(act, 3)
    path = viterbi_decode(model, log_obs)
    best, _ = _reference_viterbi(model, log_obs)
    assert path.log_prob == pytest.approx(best, abs=1e-9)
    assert _path_log_prob(model, path, log_obs) == pytest.approx(best, abs=1e-9)


# ---------------------------------------------------------------- edge cases


def test_zero_frames_gives_empty_path():
    model = BarPointerModel.from_bpm()
    path = viterbi_decode(model, np.empty((0, 3)))
    assert path.tempo_index.size == 0 and path.position.size == 0
    assert path.meter == 0 and path.log_prob == -np.inf


def test_one_frame():
    model = BarPointerModel.from_bpm(fps=10.0, min_bpm=60, max_bpm=120, meters=(3,))
    log_obs = observation_log_densities(np.array([[0.9, 0.05, 0.05]]))
    path = viterbi_decode(model, log_obs)
    best, _ = _reference_viterbi(model, log_obs)
    assert path.log_prob == pytest.approx(best)
    # a strong beat activation puts the single frame on a (non-down)beat state
    iv = model.intervals[path.tempo_index[0]]
    assert path.position[0] % iv == 0 and path.position[0] >= iv


def test_all_zero_activations_decode_to_a_valid_path():
    model = BarPointerModel.from_bpm(fps=10.0, min_bpm=60, max_bpm=120)
    log_obs = observation_log_densities(np.zeros((30, 3)))
    assert np.all(np.isfinite(log_obs))
    path = viterbi_decode(model, log_obs)
    assert np.isfinite(path.log_prob)
    assert path.log_prob == pytest.approx(_reference_viterbi(model, log_obs)[0])


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_activations_raise(bad):
    act = np.full((10, 3), 0.1)
    act[4, 0] = bad
    with pytest.raises(ValueError, match="NaN or inf"):
        observation_log_densities(act)
    with pytest.raises(ValueError, match="NaN or inf"):
        viterbi_decode(BarPointerModel.from_bpm(), np.full((10, 3), bad))


@pytest.mark.parametrize("shape", [(10,), (10, 1), (10, 4), (2, 3, 3)])
def test_wrong_shapes_raise(shape):
    with pytest.raises(ValueError, match="shape"):
        observation_log_densities(np.zeros(shape))
    with pytest.raises(ValueError, match="shape"):
        viterbi_decode(BarPointerModel.from_bpm(), np.zeros(shape))


def test_huge_and_negative_activations_are_clipped_to_probabilities():
    log_obs = observation_log_densities(np.array([[1e30, -5.0], [-1e30, 1e30]]))
    assert np.all(np.isfinite(log_obs)) and np.all(log_obs <= 0.0)
    assert log_obs[0, 1] == 0.0 and log_obs[1, 2] == 0.0


def test_transition_rows_are_distributions_and_sparse():
    iv = np.arange(14, 56)
    lt = tempo_transition_matrix(iv, 100.0)
    np.testing.assert_allclose(np.exp(lt).sum(axis=1), 1.0)
    assert np.all(np.argmax(lt, axis=1) == np.arange(iv.size))  # keeping the tempo is likeliest
    assert np.isneginf(lt[0, -1])  # 14 -> 55 frames per beat is pruned
    with pytest.raises(ValueError, match="transition_lambda"):
        tempo_transition_matrix(iv, 0.0)


def test_restricted_model_keeps_window_and_normalises():
    model = BarPointerModel.from_bpm().restricted(110.0, 130.0)
    assert np.all((model.bpms >= 110.0) & (model.bpms <= 130.0))
    np.testing.assert_allclose(np.exp(model.log_transitions).sum(axis=1), 1.0)


def test_one_hour_backpointers_stay_small():
    model = BarPointerModel.from_bpm()
    assert len(model.intervals) == 42 and model.meters == (2, 3, 4)
    assert model.backpointer_bytes(3600 * 50) < 100 * 2**20


def test_bad_model_parameters_raise():
    with pytest.raises(ValueError, match="min_bpm <= max_bpm"):
        BarPointerModel.from_bpm(min_bpm=200, max_bpm=100)
    with pytest.raises(ValueError, match="meters"):
        BarPointerModel.from_bpm(meters=())
    with pytest.raises(ValueError, match="observation_lambda"):
        BarPointerModel.from_bpm(observation_lambda=1)


@pytest.mark.parametrize(
    "value, error",
    [(2.5, TypeError), (16.0, TypeError), (True, TypeError), ("16", TypeError), (None, TypeError),
     (np.float64(3.0), TypeError), (1, ValueError), (np.int64(0), ValueError),
     (-5, ValueError), (2**31 + 1, ValueError),
     pytest.param(10**400, ValueError, id="10**400")],
)
def test_observation_lambda_must_be_an_int_in_range(value, error):
    """A float used to be truncated (2.5 decoded as 2) and 10**400 raised OverflowError."""
    from fractalsync_tracking import grid_from_activations

    act = np.full((10, 3), 0.1)
    with pytest.raises(error, match="observation_lambda"):
        observation_log_densities(act, value)
    with pytest.raises(error, match="observation_lambda"):
        BarPointerModel.from_bpm(observation_lambda=value)
    with pytest.raises(error, match="observation_lambda"):
        grid_from_activations(act, observation_lambda=value)


def test_observation_lambda_numpy_ints_and_the_upper_limit_work():
    act = np.array([[0.3, 0.2, 0.5]])
    # no-beat density (1 - beat - downbeat) / (lambda - 1): 0.5 / 4 for lambda = 5
    assert observation_log_densities(act, np.int32(5))[0, 0] == pytest.approx(np.log(0.125))
    model = BarPointerModel.from_bpm(observation_lambda=np.int64(4))
    np.testing.assert_array_equal(model.beat_widths, np.ceil(model.intervals / 4))
    top = BarPointerModel.from_bpm(observation_lambda=2**31)
    assert np.all(top.beat_widths == 1)
    assert np.all(np.isfinite(observation_log_densities(act, 2**31)))


def test_periodic_activation_recovers_tempo_and_downbeats():
    """A clean 120 BPM 3/4 pulse: period 25 frames at 50 fps, accented every third beat."""
    n = 1000
    act = np.zeros((n, 3))
    act[:, 2] = 1.0
    beats = np.arange(7, n, 25)
    for i, f in enumerate(beats):
        col = 1 if i % 3 == 0 else 0
        act[f, col], act[f, 2] = 0.9, 0.1
    model = BarPointerModel.from_bpm()
    path = viterbi_decode(model, observation_log_densities(act))
    assert path.meter == 3
    assert np.all(model.intervals[path.tempo_index[10:-10]] == 25)
    iv = model.intervals[path.tempo_index]
    on_down = path.position[beats] == 0
    on_beat = path.position[beats] % iv[beats] == 0
    assert on_beat.all() and np.array_equal(on_down, np.arange(beats.size) % 3 == 0)


def test_extreme_finite_observations_match_reference():
    model = BarPointerModel.from_bpm(fps=10.0, min_bpm=60, max_bpm=120, meters=(2, 3))
    rng = np.random.default_rng(3)
    log_obs = rng.choice([-1e6, -1e-300, -700.0, 0.0], size=(25, 3))
    path = viterbi_decode(model, log_obs)
    best, per_meter = _reference_viterbi(model, log_obs)
    assert path.log_prob == pytest.approx(best, rel=1e-12)
    np.testing.assert_allclose(path.meter_log_probs, per_meter, rtol=1e-12)
    assert _path_log_prob(model, path, log_obs) == pytest.approx(best, rel=1e-12)


def test_restricted_outside_range_keeps_nearest_tempo():
    model = BarPointerModel.from_bpm()
    sub = model.restricted(400.0, 420.0)
    assert len(sub.intervals) == 1 and sub.intervals[0] == model.intervals[0]
    assert sub.log_transitions[0, 0] == 0.0


@pytest.mark.parametrize("clip", ["vibe_ace", "lets_go_fishin"])
def test_default_transition_floor_does_not_change_real_paths(clip):
    from pathlib import Path

    act = np.load(Path(__file__).parent / "data" / "reference" / clip / "act_m1.npy")
    log_obs = observation_log_densities(act)
    sparse = BarPointerModel.from_bpm()
    full = BarPointerModel.from_bpm(transition_floor=0.0)
    assert np.isfinite(sparse.log_transitions).sum() < np.isfinite(full.log_transitions).sum()
    a, b = viterbi_decode(sparse, log_obs), viterbi_decode(full, log_obs)
    assert a.meter == b.meter
    np.testing.assert_array_equal(a.position, b.position)
    np.testing.assert_array_equal(a.tempo_index, b.tempo_index)
    with pytest.raises(ValueError, match="floor"):
        BarPointerModel.from_bpm(transition_floor=1.0)
