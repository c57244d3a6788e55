"""Shared test settings."""

from hypothesis import HealthCheck, settings

# Properties are checked for correctness, never for speed: a loaded CI machine must not turn a slow
# example into a failure (timing belongs in benchmarks/).
settings.register_profile("default", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("default")
