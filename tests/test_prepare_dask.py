"""prepare on a dask cluster never hangs: a stuck track times out, a track whose worker dies is
a per-track error (KilledWorker) while one that dies once is retried, a worker that cannot
import the package fails its tracks, and a cluster without workers ends the batch. Real
LocalClusters; no timing asserts (the batches run in a thread joined with a generous limit)."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import threading

import pytest

from fractalsync_tracking.prepare import _run_dask, prepare_corpus

distributed = pytest.importorskip("distributed")  # the [cluster] extra
dask = pytest.importorskip("dask")

import dask_tasks  # noqa: E402  (tests/ helper, importable by the workers)
from test_prepare import GOOD, write_corpus  # noqa: E402

LIMIT_S = 600  # a batch that has not ended after this long is a hang


def run_batch(tasks, scheduler, timeout_s):
    """_run_dask in a thread: {name: outcome}, in the order the outcomes came."""
    outcomes = {}
    error = []

    def target():
        try:
            _run_dask(tasks, scheduler, outcomes.__setitem__, timeout_s, task=dask_tasks.run)
        except BaseException as exc:  # noqa: BLE001 (re-raised in the test's thread)
            error.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(LIMIT_S)
    assert not thread.is_alive(), f"the batch did not end within {LIMIT_S} s"
    if error:
        raise error[0]
    return outcomes


def cluster(**config):
    """A LocalCluster of 2 one-thread worker processes (with nannies, which restart a dead
    worker); one task per worker at a time (saturation 1.0), so that only the task that kills
    its worker is charged with the death."""
    with dask.config.set({"distributed.scheduler.worker-saturation": 1.0, **config}):
        return distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                        dashboard_address=None)


def test_a_stuck_track_times_out_and_the_others_finish(tmp_path):
    release = tmp_path / "release"
    tasks = [("stuck", "block", str(release)), ("a", "finish"), ("b", "finish")]
    with cluster() as c:
        try:
            outcomes = run_batch(tasks, c.scheduler_address, timeout_s=8.0)
        finally:
            release.touch()  # lets the stuck worker thread end
    assert outcomes["a"] == {"arrays": "a"} and outcomes["b"] == {"arrays": "b"}
    assert outcomes["stuck"] == {
        "error": "timed out: still running after 8 s (--track-timeout)"}


def test_losing_the_scheduler_ends_the_batch(tmp_path):
    """The cluster goes away while a track runs: the track fails, nothing waits for it."""
    release, started = tmp_path / "release", tmp_path / "started"
    outcomes, done = {}, threading.Event()
    try:
        with cluster() as c:
            def target():
                try:
                    _run_dask([("stuck", "block", str(release), str(started))],
                              c.scheduler_address, outcomes.__setitem__, float(LIMIT_S),
                              task=dask_tasks.run)
                finally:
                    done.set()

            threading.Thread(target=target, daemon=True).start()
            for _ in range(LIMIT_S * 20):  # until the track runs (its file says so)
                if started.exists() or done.is_set():
                    break
                done.wait(0.05)
            assert started.exists()
    finally:
        release.touch()
    assert done.wait(LIMIT_S), f"the batch did not end within {LIMIT_S} s"
    assert outcomes["stuck"]["error"].startswith("worker failed: "), outcomes


def test_a_dying_worker_is_a_track_error_and_a_retry_can_work(tmp_path):
    tasks = [("dies", "die"), ("dies_once", "die_once", str(tmp_path / "died")),
             ("fine", "finish")]
    with cluster(**{"distributed.scheduler.allowed-failures": 1}) as c:
        outcomes = run_batch(tasks, c.scheduler_address, timeout_s=300.0)
    assert outcomes["fine"] == {"arrays": "fine"}
    assert outcomes["dies_once"] == {"arrays": "dies_once"}  # dask ran it again
    assert (tmp_path / "died").exists()
    error = outcomes["dies"]["error"]
    assert error.startswith("worker failed: KilledWorker: ") and "died" in error


def test_no_worker_ends_the_batch_with_every_track_failed(tmp_path, beatnet_models_dir):
    audio, labels = write_corpus(tmp_path)
    with distributed.LocalCluster(n_workers=0, dashboard_address=None) as c:
        report = prepare_corpus(audio, labels, tmp_path / "out", scheduler=c.scheduler_address,
                                progress=False, track_timeout_s=3.0)
    ran = [t for t in report.tracks if t.name in GOOD]
    assert len(ran) == 3 and all(t.status == "failed" for t in ran)
    assert {t.error for t in ran} == {
        "not started: no dask worker joined the scheduler within 3 s (--track-timeout)"}
    assert json.loads(report.manifest.read_text())["counts"]["failed"] == 5  # 3 + 2 bad tracks
    assert not list((tmp_path / "out").glob("*.npz"))


def start_worker(scheduler: str, blocked: str) -> subprocess.Popen:
    """A dask worker process (no nanny, one thread) for which ``import blocked`` fails."""
    code = ("import sys\n"
            "sys.modules[sys.argv[2]] = None  # import -> ModuleNotFoundError\n"
            "from distributed.cli.dask_worker import main\n"
            "sys.argv = ['dask-worker', sys.argv[1], '--no-nanny', '--nthreads', '1',\n"
            "            '--no-dashboard']\n"
            "main()\n")
    return subprocess.Popen([sys.executable, "-c", code, scheduler, blocked],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@contextlib.contextmanager
def cluster_with_a_broken_worker(good_workers: int, blocked: str):
    """A LocalCluster with ``good_workers`` workers plus one that cannot import ``blocked``,
    all connected."""
    with distributed.LocalCluster(n_workers=good_workers, threads_per_worker=1,
                                  dashboard_address=None) as c:
        worker = start_worker(c.scheduler_address, blocked)
        try:
            with distributed.Client(c.scheduler_address) as client:
                client.wait_for_workers(good_workers + 1, timeout=LIMIT_S)
            yield c.scheduler_address
        finally:
            worker.kill()
            worker.wait(60)


def test_a_worker_that_cannot_import_the_package_fails_every_track(tmp_path,
                                                                  beatnet_models_dir):
    audio, labels = write_corpus(tmp_path)
    with cluster_with_a_broken_worker(0, "fractalsync_tracking") as scheduler:
        report = prepare_corpus(audio, labels, tmp_path / "out", scheduler=scheduler,
                                progress=False)  # the default timeout: no waiting for it
    ran = [t for t in report.tracks if t.name in GOOD]
    assert len(ran) == 3 and all(t.status == "failed" for t in ran)
    for t in ran:
        assert t.error.startswith("worker failed: no worker can run the tracks (tcp://")
        assert "ModuleNotFoundError" in t.error and "fractalsync_tracking" in t.error
    assert json.loads(report.manifest.read_text())["counts"]["failed"] == 5
    assert not list((tmp_path / "out").glob("*.npz"))


def test_tracks_avoid_a_worker_that_cannot_import_the_task():
    tasks = [(f"t{i}", "finish") for i in range(6)]
    with cluster_with_a_broken_worker(1, "dask_tasks") as scheduler:
        outcomes = run_batch(tasks, scheduler, timeout_s=float(LIMIT_S))
    assert outcomes == {name: {"arrays": name} for name, _ in tasks}
