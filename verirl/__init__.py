"""verirl: RL fine-tuning of generative models driven by verifier rewards.

The package imports nothing heavy at import time; trainers, models and rewards live in submodules.
"""

__version__ = "0.1.0"

from verirl.rewards.base import reward  # noqa: E402  (light: no torch)

__all__ = ["__version__", "reward"]
