"""Shared fixtures for the test suite."""

import signal

import numpy as np
import pytest


@pytest.fixture
def rng():
    """A seeded generator, so every failure reproduces.

    Gradient checks of whole networks cross non-smooth points (a ReLU input or two max-pool
    candidates within a finite-difference step of each other) for a few percent of random
    draws; the fixed seed keeps the suite deterministic. A change that moves a check onto
    such a point shows up as one entry off by O(1): check the same code with another seed.
    """
    return np.random.default_rng(3)


class Terminated(Exception):
    """What a SIGTERM that convnet did not catch raises in a test (instead of ending pytest)."""


@pytest.fixture
def sigterm_raises():
    """Make an uncaught SIGTERM raise Terminated for the test's duration; yields that handler."""

    def terminated(signum, frame):
        raise Terminated

    previous = signal.signal(signal.SIGTERM, terminated)
    yield terminated
    signal.signal(signal.SIGTERM, previous)
