"""Project-wide pytest configuration."""

import os

from hypothesis import HealthCheck, settings

# Two shared cores: no per-example deadline (timing is not what these tests check), fewer examples
# locally, more when HYPOTHESIS_PROFILE=thorough.
settings.register_profile(
    "default", deadline=None, max_examples=100, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "thorough", deadline=None, max_examples=1000, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))
