"""Shared test configuration: hypothesis profiles, and the log's self-checks."""

import os

from hypothesis import HealthCheck, settings

import p2pchat.log

# Every time the log's quick look says no position can become stable, the full rule 8
# computation must agree (in this process: the simulator and the property tests).
p2pchat.log._CROSS_CHECK = True

settings.register_profile(
    "ci",
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "dev",
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "stress",
    max_examples=5000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
