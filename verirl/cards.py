"""Model cards with huggingface_hub's ``ModelCard``: base model, recipe, rewards and weights, eval before/after."""

from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from verirl import outputs

TEMPLATE = Path(__file__).parent / "templates" / "modelcard.md"


def _versions() -> dict[str, str]:
    found = {}
    for dist in ("verirl", "trl", "diffusers", "transformers", "torch", "peft", "accelerate", "datasets"):
        try:
            found[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return found


@dataclass(frozen=True)
class CardInfo:
    """What a trainer's model card says it is: the Hub task (pipeline tag), the libraries its files load with, and
    whether its held-out samples are images."""

    task: str = "text-generation"
    libraries: tuple[str, ...] = ("trl",)
    image: bool = False
    method: str = ""  # how the card names the training ("Flow-GRPO on diffusers"); default "<TRAINER> on TRL"
    reinforcement: bool = True  # tagged reinforcement-learning (False: supervised, e.g. sft, vrec)


def build_model_card(
    output_dir: str | Path,
    recipe_yaml: str,
    recipe: dict[str, Any],
    results: dict[str, Any],
    repo_id: str | None = None,
    card: CardInfo | None = None,
) -> Any:
    """A ``huggingface_hub.ModelCard`` for a run, from its resolved recipe (as a dict), its results and what its
    trainer declares (:class:`CardInfo`)."""
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    out = Path(output_dir)
    trainer = str(recipe.get("trainer") or "unknown")
    base_model = (results.get("model") or {}).get("base_model") or None
    reward_specs = [r if isinstance(r, dict) else {"name": str(r)} for r in recipe.get("rewards") or []]
    failures = results.get("reward_failures") or {}
    rewards = [
        {
            "name": r["name"],
            "weight": r.get("weight", 1.0),
            "timeout_s": r.get("timeout_s"),
            "failed": (failures.get(r["name"].rsplit(":", 1)[-1]) or {}).get("failed", 0),
        }
        for r in reward_specs
    ]
    model_name = repo_id.split("/")[-1] if repo_id else out.resolve().name
    data = recipe.get("data") or {}
    dataset_name = f"verirl/{data['builtin']}" if data.get("builtin") else str(data.get("path", "custom"))
    before, after = results.get("before"), results.get("after")
    card = card or CardInfo()
    image, task = card.image, card.task
    eval_results = None
    if after:
        eval_results = [
            EvalResult(
                task_type=task,
                dataset_type=dataset_name,
                dataset_name=f"{dataset_name} (held-out)",
                metric_type="accuracy",
                metric_value=round(after["accuracy"], 4),
                metric_name=f"accuracy ({after.get('reward', 'reward')})",
            )
        ]
    lora = (out / "adapter_config.json").is_file() or (out / "pytorch_lora_weights.safetensors").is_file()
    library = list(card.libraries)
    tags = ["verirl", *library, trainer, *(["reinforcement-learning"] if card.reinforcement else [])] + [
        r["name"] for r in rewards if ":" not in r["name"]
    ]
    card_data = ModelCardData(
        base_model=base_model,
        library_name="verirl",
        tags=tags,
        model_name=model_name,
        eval_results=eval_results,
        pipeline_tag=task,
    )
    train = results.get("train") or {}
    return ModelCard.from_template(
        card_data,
        template_path=str(TEMPLATE),
        model_name=model_name,
        model_spec=(results.get("model") or {}).get("spec", ""),
        base_model=base_model,
        trainer=trainer,
        method=card.method or f"{str(trainer).upper()} on TRL",
        image=image,
        lora=lora,
        before=before,
        after=after,
        ranking=results.get("test")
        if isinstance(results.get("test"), dict) and "ndcg@10" in results["test"]
        else None,
        rewards=rewards,
        train_steps=train.get("steps", "?"),
        train_seconds=train.get("seconds", "?"),
        recipe_yaml=recipe_yaml,
        repo_id=repo_id or str(out),
        versions=_versions(),
    )


def write_model_card(
    output_dir: str | Path, recipe: Any, results: dict[str, Any], card: CardInfo, repo_id: str | None = None
) -> Path:
    """Write README.md into the output directory from a Recipe object."""
    import yaml

    text = recipe.to_yaml()
    model_card = build_model_card(output_dir, text, yaml.safe_load(text), results, repo_id or recipe.hub.repo_id, card)
    path = Path(output_dir) / outputs.CARD
    model_card.save(path)
    return path


def card_from_output_dir(output_dir: str | Path, repo_id: str | None = None, card: CardInfo | None = None) -> Any:
    """Rebuild the card of a finished run from its recipe.yaml and eval_results.json (used by ``verirl push``)."""
    import yaml

    out = Path(output_dir)
    recipe_file = out / outputs.RECIPE
    text = recipe_file.read_text() if recipe_file.is_file() else ""
    recipe = yaml.safe_load(text) if text else {}
    return build_model_card(out, text, recipe or {}, outputs.read_results(out), repo_id, card)
