"""Rollout generators behind one interface (:class:`verirl.generators.base.Generator`)."""

from verirl.generators.base import Generator, Rollouts, SamplingParams

__all__ = ["Generator", "Rollouts", "SamplingParams"]
