"""Verifiers: score plus textual feedback; any verifier is usable as a reward."""

from verirl.verifiers.base import Verdict, Verifier, verifier_reward

__all__ = ["Verdict", "Verifier", "verifier_reward"]
