"""Benchmarks print their figures (hop budget, ratio to the reference) as they run.

Output capture is suspended while each benchmark runs, so that these lines reach the terminal
with a plain ``pytest --benchmark-only`` from the repository root, without ``-s``. (This hook
is local to benchmarks/: the unit tests keep their capture.)
"""

from __future__ import annotations

import pytest


@pytest.hookimpl(hookwrapper=True, trylast=True)
def pytest_runtest_call(item):
    capman = item.config.pluginmanager.getplugin("capturemanager")
    with capman.global_and_fixture_disabled():
        yield
