"""Ranges of the numeric fields of trl's ``GRPOConfig`` and ``DPOConfig`` (recipe ``args``), in :func:`setting` form.

TRL's config classes check few ranges: ``GRPOConfig(num_generations=0)`` raises ZeroDivisionError in its own
``__post_init__``, and ``learning_rate=-1``, ``gradient_accumulation_steps=0``, ``num_iterations=0``,
``temperature=0`` or ``seed=-1`` build a config that fails (or silently does nothing) only once training starts.
These bounds let validation reject such values up front, as one line naming the key (``args.learning_rate:
expected > 0, got -1.0``). Bounds use the metadata keys of :func:`verirl.typecheck.setting` (``ge``, ``gt``,
``le``, ``lt``, ``sentinels``) and are checked by :func:`verirl.typecheck.check_bounds`; ``None`` always passes.

Where they come from (trl 1.16, transformers 5.19; ``tests/test_validation.py`` rebuilds each config with every
boundary value, and records which violations TRL accepts and which it raises on):

* help texts and docstrings of ``trl/trainer/grpo_config.py``, ``trl/trainer/dpo_config.py`` and
  ``transformers/training_args.py`` (documented ranges: ``top_p`` in (0, 1], ``min_p`` and ``ld_alpha`` in [0, 1],
  ``label_smoothing`` in [0, 0.5) for robust DPO, ``top_entropy_quantile`` in [0, 1], ``warmup_steps`` an integer
  or a ratio in [0, 1), ``logging_steps``/``save_steps``/``eval_steps`` an integer or a ratio);
* where the trainers divide by or range over a field: ``generation_batch_size % num_generations`` (GRPOConfig),
  ``len(dataloader) // gradient_accumulation_steps`` and ``global_step % logging_steps`` (transformers' Trainer),
  ``self._step % (steps_per_generation * num_iterations)`` and ``logits / temperature`` (GRPOTrainer),
  ``* 4 / sapo_temperature``, ``1 / (2 * beta)`` (DPO's IPO loss), ``logits / discopop_tau``,
  ``global_step % ref_model_sync_steps``, ``length % pad_to_multiple_of``;
* what the libraries underneath accept: ``numpy.random.seed`` takes 0 .. 2**32 - 1 (``transformers.set_seed``),
  torch's AdamW wants ``lr >= 0``, ``0 <= betas < 1``, ``eps >= 0``; ports are 1 .. 65535;
* sentinels: ``max_steps: -1`` means "train for ``num_train_epochs``" (transformers tests ``max_steps < 0``; 0
  would train no step), ``local_rank: -1`` means "not distributed".

Values TRL treats as "off" stay allowed where they are documented as such (``max_grad_norm: 0``, ``top_k: 0``,
``beta: 0`` for GRPO, ``save_steps: 0``); values that read as something they are not are refused
(``save_total_limit: 0`` keeps *every* checkpoint in transformers, so a limit is ``>= 1`` or null).
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "DPO_BOUNDS",
    "GRPO_BOUNDS",
    "TRAINING_ARGUMENTS_BOUNDS",
    "TRL_BOUNDS",
    "TRL_BOUNDS_BY_CONFIG",
    "bounds_for",
]

_SEED = {"ge": 0, "le": 2**32 - 1}  # numpy.random.seed
_PORT = {"ge": 1, "le": 65535}
_COUNT = {"ge": 1}
_POSITIVE = {"gt": 0}
_NON_NEGATIVE = {"ge": 0}
_PROBABILITY = {"ge": 0, "le": 1}

# transformers.TrainingArguments fields, shared by both configs.
TRAINING_ARGUMENTS_BOUNDS: dict[str, dict[str, Any]] = {
    "per_device_train_batch_size": _COUNT,  # 0: an empty batch; GRPO divides by it with generation_batch_size set
    "per_device_eval_batch_size": _COUNT,
    "gradient_accumulation_steps": _COUNT,  # Trainer: len(dataloader) // gradient_accumulation_steps
    "eval_accumulation_steps": _COUNT,
    "num_train_epochs": _POSITIVE,  # with max_steps -1: ceil(epochs * steps per epoch) steps; 0 trains nothing
    "max_steps": {"ge": 1, "sentinels": [-1]},  # -1: use num_train_epochs; 0 trains no step
    "learning_rate": _POSITIVE,  # 0 trains nothing; torch's AdamW raises on < 0 at the first step
    "warmup_steps": _NON_NEGATIVE,  # steps, or a ratio of the total when < 1
    "weight_decay": _NON_NEGATIVE,
    "adam_beta1": {"ge": 0, "lt": 1},  # torch.optim.AdamW: 0 <= beta < 1
    "adam_beta2": {"ge": 0, "lt": 1},
    "adam_epsilon": _NON_NEGATIVE,  # torch.optim.AdamW: eps >= 0
    "max_grad_norm": _NON_NEGATIVE,  # 0 disables clipping
    "label_smoothing_factor": _PROBABILITY,
    "neftune_noise_alpha": _NON_NEGATIVE,  # a noise magnitude; null disables NEFTune
    "torch_empty_cache_steps": _COUNT,
    "logging_steps": _POSITIVE,  # an integer, or a ratio of the total steps when < 1; Trainer: step % logging_steps
    "eval_steps": _NON_NEGATIVE,  # 0 / null: logging_steps
    "save_steps": _NON_NEGATIVE,  # an integer, or a ratio when < 1; 0: no step checkpoints
    "eval_delay": _NON_NEGATIVE,
    "save_total_limit": _COUNT,  # 0 or negative silently keeps every checkpoint; null = keep all
    "seed": _SEED,
    "data_seed": _SEED,
    "dataloader_num_workers": _NON_NEGATIVE,  # 0: load in the main process
    "dataloader_prefetch_factor": _COUNT,
    "ddp_bucket_cap_mb": _COUNT,
    "ddp_timeout": _COUNT,  # seconds
    "local_rank": {"ge": 0, "sentinels": [-1]},  # -1: not distributed
}

# Fields both trl configs declare themselves.
_TRL_SHARED: dict[str, dict[str, Any]] = {
    "router_aux_loss_coef": _NON_NEGATIVE,  # a loss weight; 0 disables the MoE auxiliary loss
    "pad_to_multiple_of": _COUNT,  # length % pad_to_multiple_of; "auto" and null pass (not numbers)
    "ref_model_mixup_alpha": _PROBABILITY,  # TR-DPO: pi_ref = alpha * pi_theta + (1 - alpha) * pi_ref_prev
    "ref_model_sync_steps": _COUNT,  # SyncRefModelCallback: global_step % ref_model_sync_steps
}

GRPO_BOUNDS: dict[str, dict[str, Any]] = {
    **TRAINING_ARGUMENTS_BOUNDS,
    **_TRL_SHARED,
    "num_generations": {"ge": 2},  # GRPOConfig: 0 -> ZeroDivisionError, 1 -> ValueError (no group advantage)
    "num_generations_eval": _COUNT,
    "max_completion_length": _COUNT,
    "generation_batch_size": _COUNT,
    "steps_per_generation": _COUNT,  # GRPOTrainer: self._step % steps_per_generation
    "num_iterations": _COUNT,  # GRPOTrainer: self._step % (steps_per_generation * num_iterations)
    "temperature": _POSITIVE,  # GRPOTrainer: logits / temperature
    "top_p": {"gt": 0, "le": 1},  # documented: (0, 1]
    "top_k": _NON_NEGATIVE,  # 0 disables top-k
    "min_p": _PROBABILITY,  # documented: between 0.0 and 1.0
    "repetition_penalty": _POSITIVE,  # transformers' RepetitionPenaltyLogitsProcessor: strictly positive
    "vllm_server_port": _PORT,
    "vllm_group_port": _PORT,
    "vllm_server_timeout": _POSITIVE,
    "vllm_gpu_memory_utilization": {"gt": 0, "le": 1},
    "vllm_max_model_length": _COUNT,
    "vllm_tensor_parallel_size": _COUNT,
    "beta": _NON_NEGATIVE,  # KL coefficient; 0: no reference model
    "epsilon": _NON_NEGATIVE,  # clipping range
    "epsilon_high": _NON_NEGATIVE,
    "delta": _POSITIVE,  # two-sided clipping: clamp(ratio, max=delta)
    "sapo_temperature_neg": _POSITIVE,  # sigmoid(t * (r - 1)) * 4 / t
    "sapo_temperature_pos": _POSITIVE,
    "vespo_k_pos": _NON_NEGATIVE,  # a power exponent
    "vespo_lambda_pos": _NON_NEGATIVE,  # a decay factor; GRPOTrainer silently clamps it to >= 1e-4
    "vespo_k_neg": _NON_NEGATIVE,
    "vespo_lambda_neg": _NON_NEGATIVE,
    "top_entropy_quantile": _PROBABILITY,  # documented: [0.0, 1.0]
    "entropy_coef": _NON_NEGATIVE,  # an entropy bonus; 0 disables it
    "entropy_coef_min": _NON_NEGATIVE,
    "entropy_coef_max": _NON_NEGATIVE,
    "entropy_coef_delta": _NON_NEGATIVE,
    "entropy_target": _NON_NEGATIVE,  # nats
    "max_tool_calling_iterations": _NON_NEGATIVE,  # null: no limit
    "vllm_importance_sampling_clip_max": _POSITIVE,
    "vllm_importance_sampling_clip_min": _NON_NEGATIVE,
    "vllm_importance_sampling_cap": _POSITIVE,  # deprecated alias of vllm_importance_sampling_clip_max
    "off_policy_mask_threshold": _POSITIVE,  # documented: a positive value
    "num_completions_to_print": _NON_NEGATIVE,  # null: all
}

DPO_BOUNDS: dict[str, dict[str, Any]] = {
    **TRAINING_ARGUMENTS_BOUNDS,
    **_TRL_SHARED,
    "beta": _POSITIVE,  # DPO's temperature: 0 makes the sigmoid loss constant (no gradient), IPO's 1 / (2 * beta) fail
    "dataset_num_proc": _COUNT,
    "max_length": _COUNT,
    "precompute_ref_batch_size": _COUNT,
    "ld_alpha": _PROBABILITY,  # documented: [0.0, 1.0]
    "label_smoothing": {"ge": 0, "lt": 0.5},  # robust DPO divides by 1 - 2 * label_smoothing; documented [0, 0.5)
    "discopop_tau": _POSITIVE,  # sigmoid(logits / discopop_tau)
}

TRL_BOUNDS_BY_CONFIG: dict[str, dict[str, dict[str, Any]]] = {"GRPOConfig": GRPO_BOUNDS, "DPOConfig": DPO_BOUNDS}


def _loosest(name: str) -> dict[str, Any]:
    """The bounds of ``name`` that hold in every config that has it (``beta``: >= 0 for GRPO, > 0 for DPO)."""
    found = [b[name] for b in TRL_BOUNDS_BY_CONFIG.values() if name in b]
    common: dict[str, Any] = {}
    for inclusive, strict, pick in (("ge", "gt", min), ("le", "lt", max)):
        limits = []  # (value, is_inclusive)
        for bounds in found:
            if inclusive in bounds or strict in bounds:
                key = inclusive if inclusive in bounds else strict
                limits.append((bounds[key], key == inclusive))
        if len(limits) < len(found):
            continue  # one config has no bound on this side
        value = pick(v for v, _ in limits)
        common[inclusive if any(i for v, i in limits if v == value) else strict] = value
    sentinels = [s for bounds in found for s in bounds.get("sentinels", ())]
    if sentinels:
        common["sentinels"] = list(dict.fromkeys(sentinels))
    return common


# Every bounded field of either config, by name. A name both configs declare with different ranges gets the range
# valid in both (``beta: {ge: 0}``); :func:`bounds_for` gives the exact ranges of one config.
TRL_BOUNDS: dict[str, dict[str, Any]] = {name: _loosest(name) for name in dict.fromkeys([*GRPO_BOUNDS, *DPO_BOUNDS])}


def bounds_for(config: type | str) -> dict[str, dict[str, Any]]:
    """The bounds of one trl config class (``GRPOConfig``, ``DPOConfig``, a subclass, or its name); {} for others."""
    if isinstance(config, str):
        return TRL_BOUNDS_BY_CONFIG.get(config, {})
    for klass in getattr(config, "__mro__", ()):
        if klass.__name__ in TRL_BOUNDS_BY_CONFIG and klass.__module__.startswith("trl"):
            return TRL_BOUNDS_BY_CONFIG[klass.__name__]
    return {}
