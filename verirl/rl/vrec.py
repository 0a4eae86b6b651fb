"""``trainer: vrec`` — VRec (arXiv 2603.07725): a generative recommender that reasons in latent thought steps checked
by a mixture of verifiers (the model: :mod:`verirl.rec.vrec`; docs/recommendation.md).

VRec's three supervised stages, run in order by one recipe (``vrec.stages`` selects a subset; each stage writes a
complete model to ``OUTPUT_DIR/stage-N-NAME`` and is skipped on ``--resume`` once done; inside a stage, ``--resume``
continues from its last complete checkpoint):

1. ``rec``: the LM, the thought token and the reasoning attention learn to recommend (loss: the target title);
2. ``verifier``: the LM and the attention frozen, the verifier heads and the router learn to predict the target's
   clusters (loss: title + ``v_weight`` · L_ver; VRec's stage 2 keeps the router trainable and L_mono off);
3. ``joint``: everything trains on title + ``v_weight`` · (L_ver + ``mono_weight`` · L_mono).

``thought_steps: 0`` trains the plain generative recommender (BIGRec/D3-style SFT) and ``mixture: false`` the
thought-only model, through the same stages (``verifier`` is then refused): the baselines train for the same steps.
HF's ``Trainer`` runs each stage (``args`` are its ``TrainingArguments``; learning rate and epochs are per stage).
After the last stage the model is evaluated on the held-out rows: beam search constrained to the catalogue,
NDCG/HR@{1,5,10} (``results.json`` ``test``; ``verirl rec eval`` prints the same figures for any saved model).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from verirl.cards import CardInfo
from verirl.errors import RecipeError
from verirl.rl.config import cpu_only
from verirl.rl.registry import register
from verirl.rl.trainer import Section, Trainer
from verirl.rl.trl_bounds import TRAINING_ARGUMENTS_BOUNDS
from verirl.typecheck import setting

logger = logging.getLogger("verirl")

STAGES = ("rec", "verifier", "joint")
DONE = "stage_done.json"
# VRec's released run_single.sh: stage 1 at 3e-4 (its script default), stage 2 at 1e-4, stage 3 at 5e-5
DEFAULT_LR = {"rec": 3e-4, "verifier": 1e-4, "joint": 5e-5}


@dataclass(frozen=True)
class VRecSpec:
    """The ``vrec:`` section."""

    stages: list[str] = setting(
        default_factory=lambda: list(STAGES), help="stages to run, in order: rec, verifier, joint"
    )
    thought_steps: int = setting(
        1, help="latent thought steps (0: plain generative recommender, no verifiers)", ge=0, le=8
    )
    mixture: bool = setting(True, help="the mixture of verifiers (false: thought only, r* = r)")
    n_category: int = setting(25, help="category clusters (k-means over MiniLM embeddings of item text)", ge=2)
    n_cf: int = setting(25, help="collaborative-filtering clusters (k-means over SVD item factors)", ge=2)
    cluster_seed: int = setting(0, help="k-means seed of both cluster families")
    v_weight: float = setting(1.0, help="β: weight of the verifier losses", ge=0)
    mono_weight: float = setting(1.0, help="γ: weight of L_mono in the joint stage (VRec: 0 in stage 2)", ge=0)
    rec_learning_rate: float = setting(DEFAULT_LR["rec"], help="stage rec's learning rate", gt=0)
    verifier_learning_rate: float = setting(DEFAULT_LR["verifier"], help="stage verifier's learning rate", gt=0)
    joint_learning_rate: float = setting(DEFAULT_LR["joint"], help="stage joint's learning rate", gt=0)
    rec_epochs: float = setting(1.0, help="stage rec's epochs over the training rows", gt=0)
    verifier_epochs: float = setting(1.0, help="stage verifier's epochs", gt=0)
    joint_epochs: float = setting(1.0, help="stage joint's epochs", gt=0)
    max_prompt_tokens: int = setting(512, help="prompts longer than this are cut from the left (VRec: 512)", ge=16)
    beams: int = setting(10, help="beams of the constrained held-out search (= the top-K list)", ge=1, le=64)
    length_penalty: float = setting(1.0, help="beam-search length penalty (VRec/D3's code: 1.0; 0 = sum of logprobs)")
    eval_batch_size: int = setting(8, help="prompts per constrained beam search", ge=1)


def check_vrec(spec: VRecSpec, given: Mapping[str, Any], file: str) -> VRecSpec:
    baseline = spec.thought_steps == 0 or not spec.mixture
    if baseline and "stages" not in given:  # the baselines train the same LM stages, without the verifier one
        spec = dataclasses.replace(spec, stages=[s for s in STAGES if s != "verifier"])
    if not isinstance(spec.stages, list) or not spec.stages:
        raise RecipeError(file, "vrec.stages", f"expected a non-empty list of {', '.join(STAGES)}")
    for stage in spec.stages:
        if not isinstance(stage, str) or stage not in STAGES:
            raise RecipeError(file, "vrec.stages", f"expected stages among {', '.join(STAGES)}, got {stage!r}")
    if len(set(spec.stages)) != len(spec.stages) or list(spec.stages) != [s for s in STAGES if s in spec.stages]:
        raise RecipeError(file, "vrec.stages", f"expected each stage once, in the order {', '.join(STAGES)}")
    if "verifier" in spec.stages and baseline:
        raise RecipeError(
            file, "vrec.stages", "the verifier stage needs thought_steps >= 1 and mixture: true (remove it)"
        )
    return spec


def check_recipe(recipe: Any) -> None:
    if recipe.data.builtin != "ml-100k":
        raise RecipeError(recipe.file, "data.builtin", f"vrec trains on builtin: ml-100k, got {recipe.data.builtin!r}")
    for key in ("learning_rate", "num_train_epochs", "max_steps"):
        if key in (recipe.raw.get("args") or {}):
            raise RecipeError(recipe.file, f"args.{key}", "set per stage in vrec.<stage>_learning_rate / _epochs")


def plan(recipe: Any, config: Any, processes: int) -> list[tuple[str, str]]:
    spec: VRecSpec = recipe.sections["vrec"]
    kind = (
        "plain generative recommender (no thought)"
        if spec.thought_steps == 0
        else f"{spec.thought_steps} thought step(s), "
        + (
            f"mixture of verifiers (category {spec.n_category}, cf {spec.n_cf} clusters)"
            if spec.mixture
            else "no mixture"
        )
    )
    stages = ", ".join(
        f"{s} (lr {getattr(spec, s + '_learning_rate'):g}, {getattr(spec, s + '_epochs'):g} ep)" for s in spec.stages
    )
    return [
        ("vrec", kind),
        ("stages", stages),
        ("eval", f"{spec.beams}-beam search constrained to the catalogue, NDCG/HR@1,5,10"),
    ]


# ---- the run ---------------------------------------------------------------------------------------------------


def tokenize_rows(dataset: Any, tokenizer: Any, clusters: Any, max_prompt: int) -> Any:
    """Rows -> ``prompt_ids`` (left-truncated), ``completion_ids`` (EOS appended), ``classes`` (target clusters)."""
    from verirl.rec.evaluate import prompt_of

    eos = tokenizer.eos_token_id

    def encode(row: dict[str, Any]) -> dict[str, Any]:
        prompt = tokenizer(prompt_of(row), add_special_tokens=False)["input_ids"][-max_prompt:]
        completion = tokenizer(row["completion"], add_special_tokens=False)["input_ids"] + [eos]
        return {"prompt_ids": prompt, "completion_ids": completion, "classes": clusters.of(int(row["target"]))}

    return dataset.map(encode, remove_columns=dataset.column_names)


class Collator:
    """Left-pads prompts, right-pads completions."""

    def __init__(self, pad_id: int):
        self.pad_id = pad_id

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        p_len = max(len(f["prompt_ids"]) for f in features)
        c_len = max(len(f["completion_ids"]) for f in features)
        out: dict[str, list] = {k: [] for k in ("prompt_ids", "prompt_mask", "completion_ids", "completion_mask")}
        for f in features:
            p, c = list(f["prompt_ids"]), list(f["completion_ids"])
            out["prompt_ids"].append([self.pad_id] * (p_len - len(p)) + p)
            out["prompt_mask"].append([0] * (p_len - len(p)) + [1] * len(p))
            out["completion_ids"].append(c + [self.pad_id] * (c_len - len(c)))
            out["completion_mask"].append([1] * len(c) + [0] * (c_len - len(c)))
        batch = {k: torch.tensor(v, dtype=torch.long) for k, v in out.items()}
        batch["classes"] = torch.tensor([f["classes"] for f in features], dtype=torch.long)
        return batch


def hf_trainer_class() -> type:
    """transformers' Trainer with VRec's loss, its extra losses logged, and checkpoints in VRec's folder layout."""
    from transformers import Trainer as HFTrainer

    from verirl.rec.vrec import load_weights, save_vrec

    class VRecTrainer(HFTrainer):
        def __init__(
            self, *args: Any, v_weight: float, mono_weight: float, clusters: dict, stage_number: int, **kwargs: Any
        ):
            super().__init__(*args, **kwargs)
            self.stage_number = stage_number
            self.v_weight, self.mono_weight, self.clusters = v_weight, mono_weight, clusters
            self._parts: dict[str, list[float]] = {}

        def compute_loss(self, model: Any, inputs: dict, return_outputs: bool = False, **kwargs: Any) -> Any:
            out = model(**inputs, v_weight=self.v_weight, mono_weight=self.mono_weight)
            for key in ("rec_loss", "ver_loss", "mono_loss"):
                self._parts.setdefault(key, []).append(float(out[key]))
            return (out["loss"], out) if return_outputs else out["loss"]

        def log(self, logs: dict[str, float], *args: Any, **kwargs: Any) -> None:
            logs["stage"] = self.stage_number
            for key, values in self._parts.items():
                if values and "loss" in logs:
                    logs[key] = round(sum(values) / len(values), 4)
            if "loss" in logs:
                self._parts = {}
            super().log(logs, *args, **kwargs)

        def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
            save_vrec(self.model, self.processing_class, output_dir or self.args.output_dir, self.clusters)

        def _load_from_checkpoint(self, resume_from_checkpoint: str, model: Any = None) -> None:
            load_weights(model or self.model, resume_from_checkpoint)

    return VRecTrainer


def set_trainable(model: Any, stage: str) -> int:
    """Freeze per stage (module docstring); returns the number of trainable parameters."""
    verifier_stage = stage == "verifier"
    for p in model.parameters():
        p.requires_grad_(not verifier_stage)
    if verifier_stage:
        for name in ("verifiers", "gate"):
            for p in getattr(model, name).parameters():
                p.requires_grad_(True)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def build_model(ctx: Any, spec: VRecSpec, sizes: dict[str, int]) -> tuple[Any, Any]:
    """The starting model: a VRec folder (e.g. a previous stage's) or a causal LM with fresh VRec parts."""
    import torch

    from verirl.models import load_model
    from verirl.rec.vrec import VRecConfig, VRecModel, add_thought_token, is_vrec_dir, load_vrec

    data_options = {"window": ctx.recipe.data.options.get("window", 10)}
    if ctx.recipe.data.options.get("min_rating") is not None:
        data_options["min_rating"] = ctx.recipe.data.options["min_rating"]
    name = ctx.recipe.model.name
    if is_vrec_dir(name):
        model, tokenizer = load_vrec(name)
        if model.settings.thought_steps != spec.thought_steps or model.settings.mixture != spec.mixture:
            raise RecipeError(ctx.recipe.file, "model", f"{name} has other thought_steps/mixture than vrec:")
        return model, tokenizer
    lm, tokenizer, source = load_model(name, "float32", ctx.recipe.model.trust_remote_code, ctx.recipe.model.revision)
    ctx.record_model(source.kind, source.base_model)
    settings = VRecConfig(
        thought_steps=spec.thought_steps,
        mixture=spec.mixture,
        verifier_names=list(sizes),
        verifier_sizes=list(sizes.values()),
        data=data_options,
    )
    add_thought_token(lm, tokenizer, settings)
    torch.manual_seed(ctx.config().seed)
    return VRecModel(lm, settings), tokenizer


def peak_rss_gib() -> float:
    """This process's peak resident memory so far (Linux reports KiB)."""
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)


def link_final(stage_dir: Path, out: Path) -> None:
    """The last stage's model files also at the top of ``output_dir`` (hard links: no second copy on disk)."""
    for file in stage_dir.iterdir():
        if file.is_file() and file.name != DONE:
            target = out / file.name
            target.unlink(missing_ok=True)
            try:
                os.link(file, target)
            except OSError:
                import shutil

                shutil.copy2(file, target)


def run(ctx: Any) -> dict[str, Any]:
    from transformers import set_seed

    from verirl import outputs
    from verirl.data import load_data
    from verirl.rec.clusters import Clusters, build_clusters
    from verirl.rec.evaluate import evaluate_ranking
    from verirl.rec.movielens import load_movielens
    from verirl.rec.vrec import CLUSTERS_FILE, load_weights
    from verirl.rl.callbacks import MetricsJSONLCallback, ReleaseMemoryCallback

    recipe, spec = ctx.recipe, ctx.recipe.sections["vrec"]
    base_config = ctx.config()
    set_seed(base_config.seed)
    options = recipe.data.options
    ml = load_movielens(options.get("window", 10), options.get("min_rating"))
    clusters_file = ctx.out / CLUSTERS_FILE
    if clusters_file.is_file():
        clusters = Clusters.from_json(json.loads(clusters_file.read_text()))
    else:
        start = time.monotonic()
        clusters = build_clusters(ml, spec.n_category, spec.n_cf, spec.cluster_seed)
        outputs.write_json_atomic(clusters_file, clusters.to_json())
        logger.info("item clusters built in %.1f s", time.monotonic() - start)
    model, tokenizer = build_model(ctx, spec, clusters.sizes)
    train_ds, eval_ds = load_data(recipe.data)
    features = tokenize_rows(train_ds, tokenizer, clusters, spec.max_prompt_tokens)
    stage_results = ctx.results.setdefault("stages", {})
    first = STAGES.index(spec.stages[0]) + 1
    stage_dir = ctx.out
    for number, stage in enumerate(spec.stages, start=first):
        stage_dir = ctx.out / f"stage-{number}-{stage}"
        if (stage_dir / DONE).is_file():
            logger.info("stage %s: done earlier (%s), loading it", stage, stage_dir)
            load_weights(model, stage_dir)
            continue
        trainable = set_trainable(model, stage)
        model.verifying = model.settings.uses_mixture and stage != "rec"
        if model.verifying:
            model.settings.verifiers_trained = True
        config = copy.copy(base_config)
        config.output_dir = str(stage_dir)
        config.learning_rate = getattr(spec, f"{stage}_learning_rate")
        config.num_train_epochs = getattr(spec, f"{stage}_epochs")
        config.remove_unused_columns = False
        trainer = hf_trainer_class()(
            model=model,
            args=config,
            train_dataset=features,
            data_collator=Collator(
                tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
            ),
            processing_class=tokenizer,
            callbacks=[MetricsJSONLCallback(ctx.out / "metrics.jsonl"), ReleaseMemoryCallback()],
            v_weight=spec.v_weight if stage != "rec" else 0.0,
            mono_weight=spec.mono_weight if stage == "joint" else 0.0,
            clusters=clusters.to_json(),
            stage_number=number,
        )
        checkpoint = outputs.last_complete_checkpoint(stage_dir) if ctx.resume else None
        logger.info("stage %s: %d trainable parameters, %d rows", stage, trainable, len(features))
        start = time.monotonic()
        output = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
        trainer.save_model(str(stage_dir))
        figures = {
            "steps": trainer.state.global_step,
            "seconds": round(time.monotonic() - start, 1),
            "train_loss": getattr(output, "training_loss", None),
            "trainable_parameters": trainable,
            "peak_rss_gib": peak_rss_gib(),
        }
        outputs.write_json_atomic(stage_dir / DONE, figures)
        stage_results[stage] = figures
        ctx.write_results()
    model.verifying = model.settings.uses_mixture and model.settings.verifiers_trained
    link_final(stage_dir, ctx.out)
    if eval_ds is not None and len(eval_ds) and ctx.is_main:
        logger.info("evaluating %d held-out cases (%d beams, constrained) ...", len(eval_ds), spec.beams)
        ctx.results["test"] = evaluate_ranking(
            model, tokenizer, list(eval_ds), ml.titles(), spec.beams, spec.eval_batch_size, spec.length_penalty,
            bf16=bool(base_config.bf16),
        )  # fmt: skip
        ctx.results["test"]["peak_rss_gib"] = peak_rss_gib()
    train = {
        "steps": sum(s.get("steps", 0) for s in stage_results.values()),
        "seconds": round(sum(s.get("seconds", 0) for s in stage_results.values()), 1),
        "stages": list(spec.stages),
    }
    return ctx.finish(train)


def _training_arguments() -> type:
    from transformers import TrainingArguments

    return TrainingArguments


def derive_args(recipe: Any, values: dict[str, Any], num_processes: int, file: str) -> dict[str, Any]:
    return {} if "use_cpu" in values else cpu_only(values)


VREC = register(
    Trainer(
        name="vrec",
        summary="VRec generative recommender: latent thought steps checked by a mixture of verifiers (3 stages)",
        run=run,
        config=_training_arguments,
        arg_bounds=TRAINING_ARGUMENTS_BOUNDS,
        derive_args=derive_args,
        sections=(Section(key="vrec", spec=VRecSpec, check=check_vrec, example="{thought_steps: 1, mixture: true}"),),
        backends=("hf",),
        rewards="forbidden",
        rewards_hint="vrec is supervised (title + verifier losses) and takes no rewards",
        evaluates=False,
        check=check_recipe,
        plan=plan,
        card=CardInfo(
            task="text-generation", libraries=("transformers",), method="VRec (arXiv 2603.07725)", reinforcement=False
        ),
    )
)
