"""Fixtures shared by the test modules."""

from __future__ import annotations

import logging

import pytest


@pytest.fixture(scope="module")
def ray_session():
    """A local Ray instance with 2 CPUs for the module's tests, shut down after them."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
    try:
        yield ray
    finally:
        ray.shutdown()
