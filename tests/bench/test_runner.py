"""bench.runner's server CPU share: taken over the load generator's own measured window and
interpolated at its ends, so a sampler thread that a loaded machine ran late still gives
the right figure, and a window the samples do not cover gives none rather than a wrong one."""

from __future__ import annotations

import pytest

from bench.runner import cpu_share


def test_share_over_the_window_is_interpolated_at_its_ends() -> None:
    """A server at 80 % of a core, sampled every 0.5 s: the share over any window inside."""
    samples = [(t / 2, 0.8 * t / 2) for t in range(11)]
    assert cpu_share(samples, 1.0, 3.0) == pytest.approx(0.8)
    assert cpu_share(samples, 1.1, 2.3) == pytest.approx(0.8)


def test_a_starved_sampler_still_brackets_the_window() -> None:
    """Only a sample before and one after the window (none inside): the share still comes
    from the interpolation, not from the idle time around the window."""
    samples = [(0.0, 0.0), (0.5, 0.0), (3.5, 2.7), (4.0, 2.7)]  # busy 0.9 of 0.5..3.5
    assert cpu_share(samples, 1.0, 3.0) == pytest.approx(0.9)


def test_a_window_outside_the_samples_gives_none() -> None:
    """No sample before the start or after the end, or an empty window: no figure."""
    samples = [(1.0, 0.0), (2.0, 0.5)]
    assert cpu_share(samples, 0.5, 1.5) is None
    assert cpu_share(samples, 1.5, 2.5) is None
    assert cpu_share(samples, 1.5, 1.5) is None
    assert cpu_share(samples[:1], 1.0, 1.0) is None
