"""One place that turns a recipe's ``generator:`` section into a :class:`~verirl.generators.base.Generator`."""

from __future__ import annotations

from typing import Any


def build_generator(
    spec: Any,
    *,
    model_path: str,
    tokenizer: Any,
    model: Any = None,
    model_dtype: str = "float32",
    seed: int = 0,
    batch_size: int = 32,
    autocast_bf16: bool = False,
) -> Any:
    """``spec`` is a :class:`verirl.generators.spec.GeneratorSpec`. ``model`` (the loaded torch model) is needed by
    ``hf``; the vLLM backends load ``model_path`` themselves (``vllm``) or talk to a server that already has it."""
    if spec.backend == "hf":
        from verirl.generators.hf import HFGenerator

        return HFGenerator(model, tokenizer, batch_size=batch_size, autocast_bf16=autocast_bf16)
    if spec.backend == "vllm":
        from verirl.generators.vllm import VLLMGenerator

        # the engine follows the model's dtype and the trainer's seed unless the recipe says otherwise
        return VLLMGenerator(model_path, tokenizer, spec.engine_options(model_dtype, seed))
    if spec.backend == "vllm-server":
        from verirl.generators.vllm_server import VLLMServerGenerator

        return VLLMServerGenerator(spec.url, tokenizer, timeout_s=spec.timeout_s, wait_s=spec.wait_s)
    raise ValueError(f"generator.backend {spec.backend!r} does not generate text")
