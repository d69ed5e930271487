"""Settings for the whole suite."""

from hypothesis import settings

# No per-example deadline: CI machines have 2 cores shared with a control plane, and timing is not what these
# properties test.
settings.register_profile("kubedruid", deadline=None)
settings.load_profile("kubedruid")
