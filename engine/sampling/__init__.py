"""Model-agnostic sampling maths: noise schedules (``schedules``), the discrete SD noise schedule and prediction
types (``model_sampling``), initial noise (``noise``), the samplers (``samplers``) and KSampler's pipeline around
them (``ksampler``). Import the submodules; this package imports nothing (torch stays unloaded until needed).
"""
