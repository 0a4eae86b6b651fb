"""Rewards: the TRL reward protocol, registry, plug-ins, the failure guard and the built-ins."""

from verirl.rewards.base import ENTRY_POINT_GROUP, available_rewards, find_reward, resolve_reward, reward
from verirl.rewards.guard import GuardedReward

__all__ = ["ENTRY_POINT_GROUP", "GuardedReward", "available_rewards", "find_reward", "resolve_reward", "reward"]
