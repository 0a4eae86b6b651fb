"""Recipe schema and validation.

A recipe is one YAML file: what to train (``trainer``), from what (``model``), on what (``data``), for what
(``rewards``), how rollouts are made (``generator``), the trainer's own arguments (``args``: the fields of trl's
``GRPOConfig``/``DPOConfig``, validated by that class, so trl's fields and defaults are the single source of truth),
held-out evaluation (``eval``), the Hub (``hub``) and where outputs go (``output_dir``).

Every problem is reported as ONE line ``file: key: what was expected`` (:class:`verirl.errors.RecipeError`).
Validation loads no weights; it resolves rewards (imports their modules) and builds the trl config.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from verirl.errors import RecipeError, VerirlError
from verirl.typecheck import build_dataclass, check_keys, coerce

TRAINERS = ("grpo", "dpo", "evaluator", "flow_grpo")
GENERATOR_BACKENDS = ("hf", "vllm", "vllm-server", "auto", "diffusers")


@dataclass
class ModelSpec:
    name: str
    dtype: str = "float32"
    trust_remote_code: bool = False
    revision: str | None = None
    lora: dict[str, Any] | None = None  # peft LoraConfig fields; validated by LoraConfig itself


@dataclass
class DataSpec:
    builtin: str | None = None  # a built-in task (see verirl.data.BUILTIN_TASKS); its options go in `options`
    options: dict[str, Any] = field(default_factory=dict)
    path: str | None = None  # datasets.load_dataset(path, name, data_files=..., split=...)
    name: str | None = None
    data_files: Any = None
    split: str = "train"
    eval_split: str | None = None  # a split for held-out eval; otherwise n_eval rows are held out of `split`
    n_train: int | None = None
    n_eval: int | None = None
    seed: int = 0
    chat: bool = True  # wrap text prompts as a user message (chat template applied by the trainer)
    system_prompt: str | None = None
    prompt_column: str = "prompt"
    prompt_template: str | None = None  # e.g. "Solve: {question}" formatted with each row's columns
    answer_column: str = "answer"  # renamed to `answer`, the column rewards receive


@dataclass
class RewardSpec:
    name: str
    weight: float = 1.0
    timeout_s: float | None = 120.0
    args: dict[str, Any] = field(default_factory=dict)
    retry_per_sample: bool = True


@dataclass
class GeneratorSpec:
    """``backend``: hf (transformers generate), vllm (an engine in the training process), vllm-server (a
    ``verirl serve`` process at ``url``), auto (vllm where it is installed, else hf; resolved when the recipe is
    validated), diffusers (flow_grpo). The engine fields apply to vllm (and auto); see
    :class:`verirl.generators.vllm.EngineOptions` for their meaning."""

    backend: str | None = None  # hf for the LLM trainers, diffusers for flow_grpo (the default of each)
    url: str | None = None  # vllm-server: http://HOST:PORT
    timeout_s: float = 600.0  # vllm-server: the longest a generation batch or weight push may take
    wait_s: float = 0.0  # vllm-server: how long to wait for a server that is still starting
    dtype: str | None = None  # vllm: None = the recipe's model.dtype
    max_model_len: int | None = None
    enable_prefix_caching: bool = True
    enforce_eager: bool = True
    gpu_memory_utilization: float = 0.3
    kv_cache_gib: int = 2
    cpu_threads: str | None = None


SERVER_FIELDS = ("url", "timeout_s", "wait_s")
ENGINE_FIELDS = (
    "dtype",
    "max_model_len",
    "enable_prefix_caching",
    "enforce_eager",
    "gpu_memory_utilization",
    "kv_cache_gib",
    "cpu_threads",
)


@dataclass
class AdvantageSpec:
    """How GRPO turns rollouts into advantages: TRL's reward-derived ones, or RESTRAIN's (label-free)."""

    name: str = "grpo"  # grpo | restrain
    kappa: float | None = None  # restrain: majority share below which a group is penalised (default 0.375)
    delta: float | None = None  # restrain: negative offset of penalised groups (default 0.5)
    sigma: float | None = None  # restrain: bandwidth of the Gaussian shaping (default 0.5)
    center: float | None = None  # restrain: centre of the Gaussian shaping (default 1.0)
    extractor: str = "last_number"  # see verirl.answers: last_number | boxed | regex | stripped | module:function
    extractor_args: dict[str, Any] = field(default_factory=dict)
    prompt_weights: bool = True  # restrain: weight prompts by the frozen base model's consistency


ADVANTAGES = ("grpo", "restrain")


@dataclass
class EvaluatorSpec:
    """``trainer: evaluator``: sample K candidates per prompt with ``model``, label them with the first reward,
    train a FlashEvaluator (and the pointwise baseline) on the groups."""

    k: int = 8
    temperature: float = 0.7
    max_new_tokens: int = 32
    model: dict[str, Any] = field(default_factory=dict)  # FlashEvaluatorConfig fields
    train: dict[str, Any] = field(default_factory=dict)  # TrainConfig fields
    baseline: bool = True  # also train the pointwise baseline (same backbone and size)
    extractor: str = "last_number"  # answers for the majority-vote reference in the results
    groups_from: str | None = None  # reuse groups_train.jsonl / groups_eval.jsonl from this directory


@dataclass
class EvalSpec:
    enabled: bool = True
    reward: str | None = None  # default: the first reward of the recipe
    reward_args: dict[str, Any] = field(default_factory=dict)
    threshold: float = 1.0  # a sample is correct when its reward >= threshold
    max_new_tokens: int | None = None  # default: args.max_completion_length
    batch_size: int = 32
    before: bool = True


@dataclass
class HubSpec:
    push: bool = False
    repo_id: str | None = None
    private: bool = True
    revision: str | None = None


TOP_LEVEL = (
    "trainer",
    "model",
    "data",
    "rewards",
    "generator",
    "advantage",
    "evaluator",
    "args",
    "eval",
    "hub",
    "output_dir",
)


@dataclass
class Recipe:
    trainer: str
    model: ModelSpec
    data: DataSpec
    rewards: list[RewardSpec]
    generator: GeneratorSpec
    advantage: AdvantageSpec
    args: dict[str, Any]  # the user's trainer args, after coercion
    eval: EvalSpec
    hub: HubSpec
    output_dir: str
    file: str = "<recipe>"
    raw: dict[str, Any] = field(default_factory=dict)  # the merged YAML (after --set)
    derived: dict[str, Any] = field(default_factory=dict)  # trainer args verirl sets: reward_weights, use_cpu
    evaluator: EvaluatorSpec | None = None  # trainer: evaluator only

    @property
    def trainer_args(self) -> dict[str, Any]:
        """What the trl config is built from: the recipe's ``args`` plus what verirl derives."""
        return {**self.args, **self.derived}

    def to_yaml(self) -> str:
        """The resolved recipe, loadable by :func:`load_recipe` (written to the output directory)."""
        data = {
            "trainer": self.trainer,
            "model": _prune(dataclasses.asdict(self.model)),
            "data": _prune(dataclasses.asdict(self.data)),
            "rewards": [_prune(dataclasses.asdict(r)) for r in self.rewards],
            "generator": dataclasses.asdict(self.generator),
            "advantage": _prune(dataclasses.asdict(self.advantage)),
            "args": self.args,
            "eval": dataclasses.asdict(self.eval),
            "hub": _prune(dataclasses.asdict(self.hub)),
            "output_dir": self.output_dir,
        }
        if self.evaluator is not None:
            data["evaluator"] = _prune(dataclasses.asdict(self.evaluator))
            for key in ("args", "advantage", "eval"):
                data.pop(key)
        return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def _prune(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v not in (None, {}, [])}


# --------------------------------------------------------------------------------------------------- loading


def read_yaml(path: str | os.PathLike) -> dict[str, Any]:
    file = str(path)
    if not Path(file).is_file():
        raise RecipeError(file, None, "recipe file not found")
    try:
        data = yaml.safe_load(Path(file).read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise RecipeError(file, None, f"invalid YAML: {where}{problem}") from None
    except UnicodeDecodeError:
        raise RecipeError(file, None, "not a UTF-8 text file") from None
    if data is None:
        raise RecipeError(file, None, "the recipe is empty")
    if not isinstance(data, dict):
        raise RecipeError(file, None, f"expected a mapping of sections at the top level, got {type(data).__name__}")
    return data


def apply_overrides(data: dict[str, Any], overrides: list[str], file: str) -> dict[str, Any]:
    """Apply ``--set key.sub=value`` overrides (values parsed as YAML; list items by index: ``rewards.0.weight``)."""
    data = copy.deepcopy(data)
    for item in overrides:
        if "=" not in item:
            raise RecipeError(file, f"--set {item}", "expected key=value, e.g. args.max_steps=10")
        key, _, text = item.partition("=")
        try:
            value = yaml.safe_load(text) if text.strip() else ""
        except yaml.YAMLError:
            value = text
        parts = key.strip().split(".")
        node: Any = data
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if isinstance(node, list):
                if not part.isdigit() or int(part) >= len(node):
                    raise RecipeError(file, f"--set {key}", f"{part!r} is not an index of a list of {len(node)}")
                if last:
                    node[int(part)] = value
                else:
                    node = node[int(part)]
            elif isinstance(node, dict):
                if last:
                    node[part] = value
                else:
                    if not isinstance(node.get(part), dict | list):
                        if isinstance(node.get(part), str) and part == "model":
                            node[part] = {"name": node[part]}  # --set model.dtype=... on `model: alias`
                        else:
                            node[part] = {}
                    node = node[part]
            else:
                raise RecipeError(file, f"--set {key}", f"cannot set a key inside {type(node).__name__}")
    return data


def _check_generator(spec: GeneratorSpec, given: dict[str, Any], file: str, trainer: str) -> None:
    """Fields that the chosen backend does not use are errors (a typo'd backend would otherwise ignore them);
    their defaults are not (a written recipe lists every field)."""
    owners = {name: "vllm" for name in ENGINE_FIELDS} | {name: "vllm-server" for name in SERVER_FIELDS}
    defaults = GeneratorSpec()
    for name, owner in owners.items():
        used = spec.backend == owner or (spec.backend == "auto" and owner == "vllm")
        if name in given and getattr(spec, name) != getattr(defaults, name) and not used:
            raise RecipeError(file, f"generator.{name}", f"only used by backend {owner} (backend is {spec.backend})")
    from verirl.generators.vllm import INSTALL_HINT, vllm_installed

    if spec.backend == "auto":  # the same recipe runs on machines without vLLM (its engine fields then unused)
        if trainer in ("grpo", "evaluator") and vllm_installed():
            spec.backend = "vllm"
        else:
            for name in ENGINE_FIELDS:
                setattr(spec, name, getattr(defaults, name))
            spec.backend = "hf"
    if spec.backend == "vllm-server" and not spec.url:
        raise RecipeError(file, "generator.url", "required for backend vllm-server (e.g. http://127.0.0.1:8000)")
    if spec.url and not spec.url.startswith(("http://", "https://")):
        raise RecipeError(file, "generator.url", f"expected http://HOST:PORT, got {spec.url!r}")
    if spec.backend in ("vllm", "vllm-server") and trainer not in ("grpo", "evaluator"):
        raise RecipeError(
            file, "generator.backend", f"{spec.backend} generates for trainers grpo and evaluator, not {trainer}"
        )
    from verirl.models import DTYPES

    if spec.dtype is not None and spec.dtype not in DTYPES:
        raise RecipeError(
            file, "generator.dtype", f"expected one of: float32, bfloat16, float16, auto; got {spec.dtype!r}"
        )
    for name in ("timeout_s", "gpu_memory_utilization", "kv_cache_gib"):
        if getattr(spec, name) <= 0:
            raise RecipeError(file, f"generator.{name}", f"expected a positive number, got {getattr(spec, name)}")
    if spec.backend == "vllm" and not vllm_installed():
        raise RecipeError(file, "generator.backend", f"vllm is not installed ({INSTALL_HINT})")


def load_recipe(
    path: str | os.PathLike,
    overrides: list[str] | None = None,
    num_processes: int = 1,
    check_files: bool = True,
) -> Recipe:
    """Read, override and validate a recipe. Raises RecipeError (one line) on any problem."""
    file = str(path)
    data = apply_overrides(read_yaml(file), overrides or [], file)
    return validate(data, file, num_processes=num_processes, check_files=check_files)


# ------------------------------------------------------------------------------------------------ validation


def validate(data: dict[str, Any], file: str, num_processes: int = 1, check_files: bool = True) -> Recipe:
    check_keys(data, TOP_LEVEL, file, "")
    trainer = data.get("trainer")
    if trainer is None:
        raise RecipeError(file, "trainer", f"required key is missing; expected one of: {', '.join(TRAINERS)}")
    if trainer not in TRAINERS:
        raise RecipeError(file, "trainer", f"expected one of: {', '.join(TRAINERS)}, got {trainer!r}")

    model = _model_spec(data.get("model"), file, trainer)
    dataspec = _data_spec(data.get("data"), file, check_files)
    rewards = _reward_specs(data.get("rewards"), file, trainer)
    generator = build_dataclass(GeneratorSpec, data.get("generator") or {}, file, "generator.")
    expected = ("diffusers",) if trainer == "flow_grpo" else tuple(b for b in GENERATOR_BACKENDS if b != "diffusers")
    if generator.backend is None:
        generator.backend = expected[0]
    if generator.backend not in expected:
        raise RecipeError(
            file,
            "generator.backend",
            f"expected one of: {', '.join(expected)} for trainer {trainer}, got {generator.backend!r}",
        )
    _check_generator(generator, data.get("generator") or {}, file, trainer)
    advantage = _advantage_spec(data.get("advantage"), file, trainer)
    evalspec = build_dataclass(EvalSpec, data.get("eval") or {}, file, "eval.")
    hub = build_dataclass(HubSpec, data.get("hub") or {}, file, "hub.")
    if hub.push and not hub.repo_id:
        raise RecipeError(file, "hub.repo_id", "required when hub.push is true (e.g. me/my-model)")

    output_dir = data.get("output_dir") or f"runs/{Path(file).stem}"
    output_dir = coerce(output_dir, str, file, "output_dir")

    evaluator, args, derived = None, {}, {}
    if trainer == "evaluator":
        for key in ("args", "advantage"):
            if key in data:
                raise RecipeError(file, key, "not used by trainer evaluator (its settings go in `evaluator:`)")
        evaluator = _evaluator_spec(data.get("evaluator"), file)
    elif "evaluator" in data:
        raise RecipeError(file, "evaluator", "only used by trainer: evaluator")
    else:
        args, derived = _trainer_args(data.get("args") or {}, file, trainer, rewards, output_dir, num_processes)
    recipe = Recipe(
        trainer=trainer,
        model=model,
        data=dataspec,
        rewards=rewards,
        generator=generator,
        advantage=advantage,
        args=args,
        eval=evalspec,
        hub=hub,
        output_dir=output_dir,
        file=file,
        raw=data,
        derived=derived,
        evaluator=evaluator,
    )
    if evaluator is None:  # the evaluator trainer has no generation eval
        _check_eval(recipe)
    return recipe


def _evaluator_spec(value: Any, file: str) -> EvaluatorSpec:
    if value is None:
        raise RecipeError(file, "evaluator", "required for trainer evaluator (e.g. {k: 8})")
    spec = build_dataclass(EvaluatorSpec, value, file, "evaluator.")
    for key in ("k", "max_new_tokens"):
        if getattr(spec, key) < 1:
            raise RecipeError(file, f"evaluator.{key}", f"expected a positive integer, got {getattr(spec, key)}")
    if spec.temperature < 0:
        raise RecipeError(file, "evaluator.temperature", f"expected >= 0, got {spec.temperature}")
    from verirl.verifiers.flash_evaluator import FlashEvaluatorConfig, TrainConfig

    spec.model = dataclasses.asdict(build_dataclass(FlashEvaluatorConfig, spec.model, file, "evaluator.model."))
    spec.train = dataclasses.asdict(build_dataclass(TrainConfig, spec.train, file, "evaluator.train."))
    if spec.model["d_model"] % spec.model["heads"]:
        raise RecipeError(file, "evaluator.model.heads", "must divide evaluator.model.d_model")
    if spec.groups_from is not None and not Path(spec.groups_from).is_dir():
        raise RecipeError(file, "evaluator.groups_from", f"not a directory: {spec.groups_from}")
    from verirl.answers import get_extractor

    try:
        get_extractor(spec.extractor)
    except VerirlError as exc:
        raise RecipeError(file, "evaluator.extractor", str(exc)) from None
    return spec


def _advantage_spec(value: Any, file: str, trainer: str) -> AdvantageSpec:
    if isinstance(value, str):
        value = {"name": value}
    spec = build_dataclass(AdvantageSpec, value or {}, file, "advantage.")
    if spec.name not in ADVANTAGES:
        raise RecipeError(file, "advantage.name", f"expected one of: {', '.join(ADVANTAGES)}, got {spec.name!r}")
    restrain_only = ("kappa", "delta", "sigma", "center")
    if spec.name == "grpo":
        given = [k for k in restrain_only if getattr(spec, k) is not None]
        if given:
            raise RecipeError(file, f"advantage.{given[0]}", "only used by advantage.name: restrain")
        return spec
    if trainer != "grpo":
        raise RecipeError(file, "advantage.name", f"{spec.name} shapes GRPO advantages; trainer is {trainer}")
    from verirl.rl.restrain import RestrainConfig

    defaults = RestrainConfig()
    for key in restrain_only:
        if getattr(spec, key) is None:
            setattr(spec, key, getattr(defaults, key))
    if not 0.0 <= spec.kappa <= 1.0:
        raise RecipeError(file, "advantage.kappa", f"expected a majority share in [0, 1], got {spec.kappa}")
    if spec.delta < 0:
        raise RecipeError(file, "advantage.delta", f"expected a non-negative offset, got {spec.delta}")
    if spec.sigma <= 0:
        raise RecipeError(file, "advantage.sigma", f"expected a positive bandwidth, got {spec.sigma}")
    from verirl.answers import get_extractor

    try:
        get_extractor(spec.extractor, spec.extractor_args)
    except VerirlError as exc:
        raise RecipeError(file, "advantage.extractor", str(exc)) from None
    return spec


def _model_spec(value: Any, file: str, trainer: str = "grpo") -> ModelSpec:
    if value is None:
        raise RecipeError(file, "model", "required key is missing (a built-in alias, a local directory or a Hub id)")
    if isinstance(value, str):
        value = {"name": value}
    spec = build_dataclass(ModelSpec, value, file, "model.")
    from verirl.models import DTYPES, classify_model

    if spec.dtype not in DTYPES:
        raise RecipeError(
            file, "model.dtype", f"expected one of: float32, bfloat16, float16, auto; got {spec.dtype!r}"
        )
    if trainer == "flow_grpo":
        _check_pipeline_dir(spec, file)
        return spec
    try:
        classify_model(spec.name)
    except VerirlError as exc:
        raise RecipeError(file, "model", str(exc)) from None
    if spec.lora is not None:
        _lora_config(spec.lora, file)
    return spec


def _check_pipeline_dir(spec: ModelSpec, file: str) -> None:
    """flow_grpo: a diffusers pipeline directory (model_index.json) or a Hub id; LoRA fields checked by peft."""
    path = Path(spec.name).expanduser()
    if path.exists():
        if not (path / "model_index.json").is_file():
            raise RecipeError(
                file, "model", f"{spec.name}: no model_index.json (expected a diffusers pipeline folder)"
            )
    elif spec.name.startswith((".", "/", "~")) or spec.name.count("/") != 1:
        raise RecipeError(file, "model", f"{spec.name}: no such directory, and not a Hub id (owner/name)")
    from verirl.rl.flow_grpo import LORA_DEFAULTS

    _lora_config(spec.lora or {}, file, LORA_DEFAULTS)


def _lora_config(lora: dict[str, Any], file: str, defaults: dict[str, Any] | None = None) -> Any:
    """peft's LoraConfig from ``model.lora`` (its own checks as one-line recipe errors); ``defaults`` fill unset
    fields (a causal-LM task for the LLM trainers)."""
    from peft import LoraConfig

    fields = {f.name for f in dataclasses.fields(LoraConfig) if f.init}
    check_keys(lora, fields, file, "model.lora.")
    hints = _type_hints(LoraConfig)
    values = {k: coerce(v, hints.get(k, Any), file, f"model.lora.{k}") for k, v in lora.items()}
    values = {**({"task_type": "CAUSAL_LM"} if defaults is None else defaults), **values}
    try:
        return LoraConfig(**values)
    except (TypeError, ValueError) as exc:
        raise RecipeError(file, "model.lora", _first_line(exc)) from None


def _data_spec(value: Any, file: str, check_files: bool) -> DataSpec:
    if value is None:
        raise RecipeError(file, "data", "required key is missing (e.g. {builtin: arithmetic} or {path: json, ...})")
    if isinstance(value, str):
        value = {"builtin": value}
    if not isinstance(value, dict):
        raise RecipeError(file, "data", f"expected a mapping, got {type(value).__name__}")
    from verirl.data import BUILTIN_TASKS

    value = dict(value)
    if value.get("builtin") is not None and value["builtin"] not in BUILTIN_TASKS:
        raise RecipeError(
            file, "data.builtin", f"unknown task {value['builtin']!r}; expected one of: {', '.join(BUILTIN_TASKS)}"
        )
    # Options of a built-in task may be written inline: {builtin: arithmetic, max_operand: 50}.
    if value.get("builtin") in BUILTIN_TASKS:
        params = set(inspect.signature(BUILTIN_TASKS[value["builtin"]]).parameters)
        inline = {k: value.pop(k) for k in list(value) if k in params and k not in ("n_train", "n_eval", "seed")}
        value["options"] = {**(value.get("options") or {}), **inline}
    spec = build_dataclass(DataSpec, value, file, "data.")
    if (spec.builtin is None) == (spec.path is None):
        raise RecipeError(file, "data", "expected exactly one of data.builtin or data.path")
    for key in ("n_train", "n_eval"):
        if getattr(spec, key) is not None and getattr(spec, key) < 1:
            raise RecipeError(file, f"data.{key}", f"expected a positive integer, got {getattr(spec, key)}")
    if spec.builtin is not None:
        if spec.builtin not in BUILTIN_TASKS:
            raise RecipeError(
                file, "data.builtin", f"unknown task {spec.builtin!r}; expected one of: {', '.join(BUILTIN_TASKS)}"
            )
        task = BUILTIN_TASKS[spec.builtin]
        sig = inspect.signature(task)
        hints = _type_hints(task)
        for key, val in spec.options.items():
            if key not in sig.parameters:
                options = ", ".join(p for p in sig.parameters if p not in ("n_train", "n_eval", "seed"))
                raise RecipeError(
                    file, f"data.{key}", f"unknown option of task {spec.builtin!r}; expected one of: {options}"
                )
            spec.options[key] = coerce(val, hints.get(key, Any), file, f"data.{key}")
        try:
            from verirl.data import check_task_options

            check_task_options(spec)
        except ValueError as exc:
            raise RecipeError(file, "data", str(exc)) from None
    elif check_files:
        _check_data_files(spec, file)
    return spec


def _check_data_files(spec: DataSpec, file: str) -> None:
    files = spec.data_files
    if files is not None:
        flat: list[str] = []
        if isinstance(files, str):
            flat = [files]
        elif isinstance(files, list):
            flat = [str(f) for f in files]
        elif isinstance(files, dict):
            for v in files.values():
                flat.extend([v] if isinstance(v, str) else [str(x) for x in v])
        else:
            raise RecipeError(file, "data.data_files", "expected a path, a list of paths or a mapping split -> paths")
        for f in flat:
            if "*" in f or "://" in f:
                continue
            if not Path(f).expanduser().exists():  # relative paths are relative to the current directory
                raise RecipeError(file, "data.data_files", f"file not found: {f} (relative to {Path.cwd()})")
    elif spec.path and spec.path.startswith((".", "/", "~")) and not Path(spec.path).expanduser().exists():
        raise RecipeError(file, "data.path", f"not found: {spec.path}")


def _reward_specs(value: Any, file: str, trainer: str) -> list[RewardSpec]:
    if value is None:
        value = []
    if not isinstance(value, list):
        raise RecipeError(file, "rewards", f"expected a list of rewards, got {type(value).__name__}")
    specs = []
    for i, item in enumerate(value):
        if isinstance(item, str):
            item = {"name": item}
        spec = build_dataclass(RewardSpec, item, file, f"rewards.{i}.")
        if spec.timeout_s is not None and spec.timeout_s <= 0:
            raise RecipeError(
                file, f"rewards.{i}.timeout_s", f"expected a positive number or null, got {spec.timeout_s}"
            )
        specs.append(spec)
    names = [s.name for s in specs]
    dupes = {n for n in names if names.count(n) > 1}
    if dupes:
        raise RecipeError(
            file, "rewards", f"reward {sorted(dupes)[0]!r} is listed twice (metrics are named by reward)"
        )
    if trainer in ("grpo", "evaluator", "flow_grpo") and not specs:
        raise RecipeError(file, "rewards", f"{trainer} needs at least one reward, e.g. [{{name: number_match}}]")
    if trainer == "dpo" and specs:
        raise RecipeError(file, "rewards", "dpo trains on prompt/chosen/rejected columns and takes no rewards")
    from verirl.rewards.base import resolve_reward

    for i, spec in enumerate(specs):
        try:
            resolve_reward(spec.name, spec.args)
        except VerirlError as exc:
            raise RecipeError(file, f"rewards.{i}.name", str(exc)) from None
    return specs


def config_class(trainer: str) -> type:
    if trainer == "flow_grpo":
        from verirl.rl.flow_grpo import FlowGRPOConfig

        return FlowGRPOConfig
    if trainer == "grpo":
        from trl import GRPOConfig

        return GRPOConfig
    from trl import DPOConfig

    return DPOConfig


def _type_hints(obj: Any) -> dict[str, Any]:
    import typing

    try:
        return typing.get_type_hints(obj)
    except Exception:  # noqa: BLE001 - unresolvable forward references: skip type checks, keep key checks
        return {}


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def _trainer_args(
    args: Any, file: str, trainer: str, rewards: list[RewardSpec], output_dir: str, num_processes: int
) -> tuple[dict[str, Any], dict[str, Any]]:
    if not isinstance(args, dict):
        raise RecipeError(file, "args", f"expected a mapping of {config_class(trainer).__name__} fields")
    cls = config_class(trainer)
    fields = {f.name for f in dataclasses.fields(cls) if f.init}
    check_keys(args, fields, file, "args.")
    if "output_dir" in args:
        raise RecipeError(file, "args.output_dir", "set output_dir at the top level of the recipe")
    hints = _type_hints(cls)
    values = {k: coerce(v, hints.get(k, Any), file, f"args.{k}") for k, v in args.items()}
    if trainer == "flow_grpo":
        build_trainer_config(trainer, values, output_dir, file)
        return values, {}
    _check_choices(cls, values, file)
    derived: dict[str, Any] = {}
    if trainer == "grpo":
        if "reward_weights" in values:
            raise RecipeError(file, "args.reward_weights", "set each reward's `weight` in `rewards` instead")
        derived["reward_weights"] = [r.weight for r in rewards]
    if "use_cpu" not in values and not cuda_available():
        derived["use_cpu"] = True  # no GPU: trl configs refuse bf16 otherwise; bf16 autocast works on CPU
    if trainer == "grpo":
        _check_grpo_batches(cls, values, num_processes, file)
    build_trainer_config(trainer, _as_one_process({**values, **derived}, num_processes), output_dir, file)
    return values, derived


def build_trainer_config(trainer: str, values: dict[str, Any], output_dir: str, file: str = "<recipe>") -> Any:
    """Instantiate the trl config; its own __post_init__ checks are reported as one-line recipe errors."""
    cls = config_class(trainer)
    if trainer == "flow_grpo":
        from verirl.rl.flow_grpo import apply_preset, check_config

        try:
            config = cls(**apply_preset(values))
            check_config(config)
        except ValueError as exc:
            field_name = str(exc).split(":", 1)[0]
            raise RecipeError(file, f"args.{field_name}", _first_line(exc).split(": ", 1)[-1]) from None
        return config
    try:
        return cls(output_dir=output_dir, **values)
    except (TypeError, ValueError) as exc:
        message = _first_line(exc)
        named = [k for k in values if re.search(rf"\b{re.escape(k)}\b", message)]
        raise RecipeError(file, f"args.{named[0]}" if named else "args", message) from None


def _default(cls: type, name: str) -> Any:
    return next(f.default for f in dataclasses.fields(cls) if f.name == name)


def _check_grpo_batches(cls: type, values: dict[str, Any], num_processes: int, file: str) -> None:
    """trl checks batch divisibility for the current world size (1 here); check it for the launch's processes."""
    per_device = values.get("per_device_train_batch_size", _default(cls, "per_device_train_batch_size"))
    num_generations = values.get("num_generations", _default(cls, "num_generations"))
    global_batch = per_device * num_processes
    if values.get("generation_batch_size") is not None:
        generation_batch = values["generation_batch_size"]
        if generation_batch % global_batch:
            raise RecipeError(
                file,
                "args.generation_batch_size",
                f"{generation_batch} must be divisible by per_device_train_batch_size × processes = {global_batch}",
            )
        detail = f"generation_batch_size = {generation_batch}"
    else:
        steps = values.get("steps_per_generation") or values.get(
            "gradient_accumulation_steps", _default(cls, "gradient_accumulation_steps")
        )
        generation_batch = global_batch * steps
        detail = (
            f"{per_device} per device × {num_processes} processes × {steps} steps = {generation_batch} completions"
        )
    if num_generations and num_generations >= 2 and generation_batch % num_generations:
        raise RecipeError(
            file,
            "args.num_generations",
            f"the generation batch ({detail}) must be divisible by num_generations ({num_generations})",
        )


def _as_one_process(values: dict[str, Any], num_processes: int) -> dict[str, Any]:
    """Config values that make trl's world-size-1 checks equal to the checks for ``num_processes``."""
    if num_processes > 1 and "per_device_train_batch_size" in values:
        return {**values, "per_device_train_batch_size": values["per_device_train_batch_size"] * num_processes}
    if num_processes > 1:
        return {**values, "per_device_train_batch_size": 8 * num_processes}
    return values


_SUPPORTED = re.compile(r"(?:Supported values are|Must be one of) ([^.]*)")


def _check_choices(cls: type, values: dict[str, Any], file: str) -> None:
    """Enumerated string fields: trl declares some as argparse ``choices``, others only in their help text
    ("Supported values are 'grpo', 'dapo', ..."), and checks the latter only at the first training step."""
    for f in dataclasses.fields(cls):
        value = values.get(f.name)
        if not isinstance(value, str):
            continue
        choices = f.metadata.get("choices")
        if choices is None:
            found = _SUPPORTED.search(f.metadata.get("help", "") or "")
            choices = re.findall(r"'([^']+)'", found.group(1)) if found else None
        if choices and value not in list(choices):
            raise RecipeError(
                file, f"args.{f.name}", f"expected one of: {', '.join(map(str, choices))}; got {value!r}"
            )


def _check_eval(recipe: Recipe) -> None:
    ev = recipe.eval
    if ev.batch_size < 1:
        raise RecipeError(recipe.file, "eval.batch_size", f"expected a positive integer, got {ev.batch_size}")
    if ev.max_new_tokens is not None and ev.max_new_tokens < 1:
        raise RecipeError(recipe.file, "eval.max_new_tokens", f"expected a positive integer, got {ev.max_new_tokens}")
    if not ev.enabled:
        return
    name = ev.reward or (recipe.rewards[0].name if recipe.rewards else None)
    if name is None:
        raise RecipeError(
            recipe.file, "eval.reward", "required when the recipe has no rewards (or set eval.enabled: false)"
        )
    from verirl.rewards.base import resolve_reward

    args = ev.reward_args
    if ev.reward is None and recipe.rewards:
        args = args or recipe.rewards[0].args
    try:
        resolve_reward(name, args)
    except VerirlError as exc:
        raise RecipeError(recipe.file, "eval.reward", str(exc)) from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def eval_reward(recipe: Recipe) -> tuple[str, dict[str, Any]]:
    """The reward (name, args) that defines held-out accuracy."""
    if recipe.eval.reward:
        return recipe.eval.reward, recipe.eval.reward_args
    first = recipe.rewards[0]
    return first.name, recipe.eval.reward_args or first.args
