"""MDLM's noise schedules, kept importable here: they live in the core kit (``xlm_core.nn.schedule``),
which block diffusion (BDLM) shares."""

from xlm_core.nn.schedule import SCHEDULES, Cosine, LogLinear, NoiseSchedule, make_schedule

__all__ = ["SCHEDULES", "Cosine", "LogLinear", "NoiseSchedule", "make_schedule"]
