"""Trainers: GRPO and DPO on TRL (flow_grpo and advantage shaping such as RESTRAIN plug in here)."""
