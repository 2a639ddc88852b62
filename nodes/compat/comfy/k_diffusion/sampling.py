"""`comfy.k_diffusion.sampling`: the sampling helpers custom samplers build on."""
from __future__ import annotations

from engine.sampling.samplers.common import to_d  # noqa: F401 (re-exported)
