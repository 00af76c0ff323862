"""Hypothesis settings for the property tests that compare a fast path with its reference.

``CRYPTOVIZ_PROPERTY_EXAMPLES`` caps the examples per test and makes the runs repeatable (a fixed seed, no
example database): ``make mutate`` runs every test once per mutant and wants the same verdict every time.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings


def property_settings(examples: int) -> settings:
    cap = os.environ.get("CRYPTOVIZ_PROPERTY_EXAMPLES")
    if cap is None:
        return settings(max_examples=examples, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    return settings(max_examples=min(examples, int(cap)), deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow])
