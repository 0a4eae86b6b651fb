"""Flow-GRPO: the SDE step and its log-prob, advantages and loss, a training step, and `verirl train` end to end
on a tiny random SD3 pipeline (real diffusers, real peft LoRA, real accelerate)."""

import json
import math
import os
import subprocess
import sys

import pytest
import torch

from tests.conftest import VERIRL, two_processes
from verirl.errors import VerirlError
from verirl.generators.diffusion import (
    DiffusionGenerator,
    DiffusionSampling,
    check_pipeline,
    load_pipeline,
    sde_gaussian,
    sde_step,
)
from verirl.rl.flow_grpo import (
    FlowGRPOConfig,
    FlowGRPOTrainer,
    add_lora,
    clipped_policy_loss,
    combine_rewards,
    group_advantages,
    normalized_log_ratio,
)

SAMPLING = dict(num_inference_steps=6, guidance_scale=2.0, height=32, width=64, max_sequence_length=1)


@pytest.fixture()
def pipe(tiny_pipeline_dir):
    torch.manual_seed(0)
    return load_pipeline(str(tiny_pipeline_dir))


def test_sde_step_at_zero_noise_is_the_scheduler_step(pipe):
    gen = DiffusionGenerator(pipe, DiffusionSampling(**SAMPLING))
    timesteps, sigmas = gen.schedule(6)
    x, v = torch.randn(3, 4, 8, 16), torch.randn(3, 4, 8, 16)
    for i in range(6):
        pipe.scheduler.set_timesteps(6)
        pipe.scheduler._step_index = i
        expected = pipe.scheduler.step(v, timesteps[i], x, return_dict=False)[0]
        got, log_prob = sde_step(v, x, sigmas[i], sigmas[i + 1], 0.0, float(sigmas[1]))
        assert torch.equal(got, expected), i
        assert torch.equal(log_prob, torch.zeros(3))


def test_sde_log_prob_is_the_gaussian_density_of_the_flow_sde():
    torch.manual_seed(1)
    x, v = torch.randn(2, 4, 4, 4), torch.randn(2, 4, 4, 4)
    sigma, sigma_next, a = 0.6, 0.45, 0.8
    sample, log_prob = sde_step(v, x, sigma, sigma_next, a, 0.9, generator=torch.Generator().manual_seed(0))
    # independently: the paper's SDE drift and diffusion, Euler-Maruyama over dt = sigma_next - sigma
    dt = sigma_next - sigma
    s = a * math.sqrt(sigma / (1 - sigma))
    drift = v + s**2 / (2 * sigma) * (x + (1 - sigma) * v)
    normal = torch.distributions.Normal(x + drift * dt, s * math.sqrt(-dt))
    assert torch.allclose(log_prob, normal.log_prob(sample).mean(dim=(1, 2, 3)), atol=1e-5)
    # the sample really is spread as that Gaussian (noise scale within 10 %)
    assert abs(float(((sample - normal.mean) / normal.stddev).std()) - 1) < 0.1


def test_recomputed_log_prob_equals_the_rollouts(pipe):
    add_lora(pipe.transformer, {"r": 4, "lora_alpha": 8, "init_lora_weights": "gaussian"})
    gen = DiffusionGenerator(pipe, DiffusionSampling(noise_level=0.8, sde_window=3, **SAMPLING), seed=0)
    emb = gen.encode(["12", "345"]).repeat(2)
    out = gen.sample(emb, seed=0)
    traj, old = out["trajectory"], out["log_probs"]
    assert traj.shape[:2] == (4, 4) and old.shape == (4, 3)
    assert out["step_indices"].tolist()[0] < 3  # the window starts in the first half
    for j, i in enumerate(out["step_indices"].tolist()):
        v = gen.velocity(pipe.transformer, traj[:, j], out["timesteps"][i], emb, 2.0)  # with grad
        _, lp = sde_step(v, traj[:, j], out["sigmas"][i], out["sigmas"][i + 1], 0.8, float(out["sigmas"][1]),
                         traj[:, j + 1])  # fmt: skip
        assert lp.requires_grad
        assert torch.allclose(lp, old[:, j], atol=1e-4), (lp, old[:, j])
        mean, _ = sde_gaussian(v, traj[:, j], out["sigmas"][i], out["sigmas"][i + 1], 0.8, float(out["sigmas"][1]))
        assert torch.allclose(mean, out["means"][:, j], atol=1e-5)  # the mean GRPO-Guard's ratio compares with


def test_ratio_norm_removes_the_log_ratios_bias_and_scale():
    torch.manual_seed(2)
    old_mean, std = torch.randn(4096, 2, 4, 4), torch.full((4096, 1, 1, 1), 0.05)
    mean = (old_mean + 0.01 * torch.randn_like(old_mean)).requires_grad_()
    x_next = old_mean + std * torch.randn_like(old_mean)  # sampled by the rollout policy

    def log_prob(mu):
        return torch.distributions.Normal(mu, std).log_prob(x_next).mean(dim=(1, 2, 3))

    plain = (log_prob(mean) - log_prob(old_mean)).detach()
    normed = normalized_log_ratio(x_next, mean, old_mean, std).detach()
    bias = ((mean - old_mean) ** 2).mean(dim=(1, 2, 3)) / (2 * 0.05**2)
    assert torch.allclose(normed, (plain + bias) * 0.05, atol=1e-6)  # GRPO-Guard's form
    assert float(plain.mean()) < -3 * float(plain.std()) / 64  # the plain ratio is biased below 1 ...
    assert abs(float(normed.mean())) < 3 * float(normed.std()) / 64  # ... the normalised one is not
    # at the rollout policy it is zero and its gradient is the plain log-prob's times std
    at_old = old_mean[:1].clone().requires_grad_()
    grad_normed = torch.autograd.grad(normalized_log_ratio(x_next[:1], at_old, old_mean[:1], std[:1]).sum(), at_old)
    at_old_2 = old_mean[:1].clone().requires_grad_()
    lp = torch.distributions.Normal(at_old_2, std[:1]).log_prob(x_next[:1]).mean()
    grad_plain = torch.autograd.grad(lp, at_old_2)
    assert torch.allclose(grad_normed[0], grad_plain[0] * 0.05, atol=1e-6)


def brightness_reward(prompts, completions, **kwargs):
    from verirl.rewards.image_stats import brightness

    return brightness(prompts, completions)


def test_one_training_step_changes_the_lora_and_nothing_else(pipe):
    config = FlowGRPOConfig(noise_level=0.8, sde_window=2, group_size=4, prompts_per_step=2, learning_rate=1e-2,
                            clip_range=0.5, kl_beta=0.1, **SAMPLING)  # fmt: skip
    trainer = FlowGRPOTrainer(pipe, config, [brightness_reward], lora={"r": 4, "lora_alpha": 8})
    named = dict(pipe.transformer.named_parameters())
    lora = {n: p.detach().clone() for n, p in named.items() if p.requires_grad}
    frozen = {n: p.detach().clone() for n, p in named.items() if not p.requires_grad}
    others = {f"vae.{n}": p.detach().clone() for n, p in pipe.vae.named_parameters()}
    others |= {f"te.{n}": p.detach().clone() for n, p in pipe.text_encoder.named_parameters()}
    assert lora and all("lora" in n for n in lora)
    out = trainer.step(["12", "345"])
    m = out["metrics"]
    assert m["trained_samples"] == 8 and m["scored_fraction"] == 1.0 and len(out["images"]) == 8
    assert math.isfinite(m["loss"]) and m["grad_norm"] > 0
    changed = {n for n, p in named.items() if n in lora and not torch.equal(p, lora[n])}
    # all but the last block's context-query LoRA (SD3's last block discards the context stream: no gradient)
    assert set(lora) - changed == {"transformer_blocks.1.attn.add_q_proj.lora_B.default.weight"}
    assert all(torch.equal(p, frozen[n]) for n, p in named.items() if n in frozen)
    assert all(torch.equal(p, others[f"vae.{n}"]) for n, p in pipe.vae.named_parameters())
    assert all(torch.equal(p, others[f"te.{n}"]) for n, p in pipe.text_encoder.named_parameters())
    # the second step sees a policy that differs from the reference: the velocity KL is now positive
    assert trainer.step(["12", "345"])["metrics"]["kl"] > 0


def test_several_iterations_per_batch_move_the_ratio_and_the_clip_binds(pipe, tiny_pipeline_dir):
    config = FlowGRPOConfig(noise_level=0.8, sde_window=2, group_size=4, prompts_per_step=1, learning_rate=5e-2,
                            clip_range=1e-4, num_iterations=3, **SAMPLING)  # fmt: skip
    trainer = FlowGRPOTrainer(pipe, config, [brightness_reward], lora={"r": 4, "lora_alpha": 8})
    m = trainer.step(["12"])["metrics"]
    assert m["ratio"] != 1.0 and m["clipfrac"] > 0  # the last pass sees a policy two updates past the rollout's
    fresh = load_pipeline(str(tiny_pipeline_dir))
    single = FlowGRPOTrainer(fresh, FlowGRPOConfig(noise_level=0.8, sde_window=2, group_size=4, **SAMPLING),
                             [brightness_reward])  # fmt: skip
    assert single.step(["12"])["metrics"]["ratio"] == pytest.approx(1.0, abs=1e-6)


def test_ratio_norm_scales_the_first_gradient_by_std_over_dt(tiny_pipeline_dir):
    """At the rollout policy RatioNorm's gradient is the plain one times std (the rescaled log-ratio) / |dt| (the
    reweighting): one SDE step, same seeds, same rollouts, gradient norms compared."""
    norms, factor = {}, None
    for ratio_norm in (False, True):
        torch.manual_seed(0)
        config = FlowGRPOConfig(noise_level=0.8, sde_window=1, group_size=4, prompts_per_step=1, max_grad_norm=1e9,
                                ratio_norm=ratio_norm, **SAMPLING)  # fmt: skip
        trainer = FlowGRPOTrainer(load_pipeline(str(tiny_pipeline_dir)), config, [brightness_reward],
                                  lora={"r": 4, "lora_alpha": 8})  # fmt: skip
        trainer.generator.window = lambda steps: [1]
        norms[ratio_norm] = trainer.step(["12"])["metrics"]["grad_norm"]
        _, sigmas = trainer.generator.schedule(6)
        _, std = sde_gaussian(torch.zeros(1, 1), torch.zeros(1, 1), sigmas[1], sigmas[2], 0.8, float(sigmas[1]))
        factor = float(std) / float(sigmas[1] - sigmas[2])
    assert factor != pytest.approx(1.0, abs=0.1)
    assert norms[True] / norms[False] == pytest.approx(factor, rel=1e-3)


def test_ratio_norm_trains_and_its_clip_binds(pipe):
    config = FlowGRPOConfig(noise_level=0.8, sde_window=2, group_size=4, prompts_per_step=1, learning_rate=5e-2,
                            clip_range=1e-6, ratio_norm=True, num_iterations=3, **SAMPLING)  # fmt: skip
    trainer = FlowGRPOTrainer(pipe, config, [brightness_reward], lora={"r": 4, "lora_alpha": 8})
    before = [p.detach().clone() for p in trainer.params]
    m = trainer.step(["12"])["metrics"]
    assert math.isfinite(m["loss"]) and m["grad_norm"] > 0 and m["clipfrac"] > 0
    assert any(not torch.equal(p, b) for p, b in zip(trainer.params, before, strict=True))


def test_same_initial_noise_makes_a_group_differ_only_by_its_sde_steps(pipe):
    gen = DiffusionGenerator(pipe, DiffusionSampling(noise_level=0.8, **SAMPLING), seed=0)
    emb = gen.encode(["12", "345"]).repeat(2)
    out = gen.sample(emb, seed=0, window=[0, 1], shared_noise=2)
    start, final = out["trajectory"][:, 0], out["latents"]
    assert torch.equal(start[0], start[1]) and torch.equal(start[2], start[3]) and not torch.equal(start[1], start[2])
    assert not torch.allclose(final[0], final[1])  # the SDE steps' noise still differs within the group
    ode = gen.sample(emb, seed=0, noise_level=0.0, window=[], shared_noise=2)["latents"]
    assert torch.allclose(ode[0], ode[1]) and not torch.allclose(ode[1], ode[2])
    config = FlowGRPOConfig(noise_level=0.8, sde_window=2, group_size=2, prompts_per_step=2, same_initial_noise=True,
                            **SAMPLING)  # fmt: skip
    trainer = FlowGRPOTrainer(pipe, config, [brightness_reward], lora={"r": 2, "lora_alpha": 2})
    assert trainer.step(["12", "345"])["metrics"]["trained_samples"] == 4
    with pytest.raises(ValueError, match="shared_noise: 4 rows do not form runs of 3"):
        gen.sample(emb, shared_noise=3)


def test_images_without_a_reward_are_left_out_not_fatal(pipe):
    def half_none(prompts, completions, **kwargs):
        return [None if i % 2 else float(i) for i in range(len(completions))]

    config = FlowGRPOConfig(noise_level=0.8, sde_window=2, group_size=4, prompts_per_step=1, **SAMPLING)
    trainer = FlowGRPOTrainer(pipe, config, [half_none], lora={"r": 2, "lora_alpha": 2})
    m = trainer.step(["12"])["metrics"]
    assert m["scored_fraction"] == 0.5 and m["trained_samples"] == 2


def test_group_advantages_and_reward_combination():
    adv, mask = group_advantages([1.0, 0.0, None, 0.5, 2.0, 2.0, 2.0, 2.0], group_size=4)
    assert mask == [True, True, False, True, True, True, True, True]
    values = torch.tensor([1.0, 0.0, 0.5])
    expected = (values - values.mean()) / (values.std(unbiased=False) + 1e-4)
    assert torch.allclose(adv[[0, 1, 3]], expected, atol=1e-5)
    assert adv[2] == 0 and torch.equal(adv[4:], torch.zeros(4))  # equal rewards: no signal
    _, mask = group_advantages([None, 3.0, None, None], group_size=4)
    assert mask == [False] * 4  # a lone scored sample has nothing to be compared with
    with pytest.raises(ValueError, match="groups of 3"):
        group_advantages([1.0, 2.0], 3)
    assert combine_rewards([[1.0, None, None], [0.5, 2.0, None]], [1.0, 0.5]) == [1.25, 1.0, None]


def test_clipped_loss_stops_the_gradient_outside_the_trust_region():
    old = torch.zeros(2)
    new = torch.tensor([0.5, 0.0], requires_grad=True)  # ratio e^0.5 (outside 1 +- 0.2) and 1
    loss, stats = clipped_policy_loss(new, old, torch.tensor([1.0, 1.0]), 0.2)
    loss.backward()
    assert new.grad[0] == 0 and new.grad[1] < 0
    assert stats["clipfrac"] == 0.5


def test_unsupported_pipeline_and_long_prompts_get_clear_errors(pipe):
    class FluxLikePipeline:
        pass

    with pytest.raises(VerirlError, match="FluxLikePipeline: not supported by Flow-GRPO yet; supported: "):
        check_pipeline(FluxLikePipeline())
    gen = DiffusionGenerator(pipe, DiffusionSampling(**SAMPLING))
    with pytest.raises(VerirlError, match=r"prompt 1: 12 tokens, the pipeline's tokenizer allows 8"):
        gen.check_prompts(["12", "1234567890"])


def test_generator_interface_returns_images_per_prompt(pipe):
    gen = DiffusionGenerator(pipe, DiffusionSampling(**SAMPLING))
    rollouts = gen.generate(["12", "345", "6789"], n=2)
    prompts, images = rollouts.flat_images()
    assert prompts == ["12", "12", "345", "345", "6789", "6789"]
    assert [im.size for im in images] == [(64, 32)] * 6


# Flux (guidance embedded, no negative pass) and QwenImage (true CFG with the negative prompt " ", norm-rescaled)
PACKED = {
    "flux": dict(sampling=dict(num_inference_steps=4, guidance_scale=3.5, height=32, width=64, max_sequence_length=8),
                 call=dict(guidance_scale=3.5, max_sequence_length=8), lora=(64, 128, "ff_context.net.2")),
    "qwen": dict(sampling=dict(num_inference_steps=4, guidance_scale=4.0, height=32, width=64),
                 call=dict(true_cfg_scale=4.0, negative_prompt=[" ", " "]), lora=(64, 128, "txt_mlp.net.2")),
}  # fmt: skip


@pytest.fixture(scope="module")
def packed_pipeline_dir(tmp_path_factory, request):
    from verirl.testing import tiny_flux_pipeline, tiny_qwen_image_pipeline

    path = tmp_path_factory.mktemp("pipelines") / request.param
    (tiny_flux_pipeline if request.param == "flux" else tiny_qwen_image_pipeline)().save_pretrained(path)
    return request.param, path


@pytest.mark.parametrize("packed_pipeline_dir", ["flux", "qwen"], indirect=True)
def test_packed_pipelines_ode_sampling_equals_the_diffusers_pipeline(packed_pipeline_dir):
    """Packed latents, guidance (embedded or true CFG), the shifted sigmas: at zero noise our sampler is the
    pipeline's own ``__call__``."""
    kind, path = packed_pipeline_dir
    pipe = load_pipeline(str(path))
    assert type(pipe).__name__ == {"flux": "FluxPipeline", "qwen": "QwenImagePipeline"}[kind]
    sampling = PACKED[kind]["sampling"]
    gen = DiffusionGenerator(pipe, DiffusionSampling(**sampling))
    prompts = ["12", "3456789"]  # QwenImage: prompts of different token lengths, padded and masked
    out = gen.sample(gen.encode(prompts), seed=0, noise_level=0.0, window=[])
    start = gen.initial_latents(2, torch.Generator().manual_seed(0))
    size = {k: sampling[k] for k in ("num_inference_steps", "height", "width")}
    reference = pipe(prompts, latents=start, output_type="latent", **size, **PACKED[kind]["call"]).images
    assert out["latents"].shape == start.shape and torch.allclose(out["latents"], reference, atol=1e-5)
    assert not torch.allclose(out["sigmas"][:4], torch.linspace(1, 0.25, 4))  # the image-size shift is applied
    assert [im.size for im in gen.decode(out["latents"])] == [(64, 32)] * 2


@pytest.mark.parametrize("packed_pipeline_dir", ["flux", "qwen"], indirect=True)
def test_dry_run_shows_the_backbones_default_lora_rank(packed_pipeline_dir, write_recipe, tmp_path):
    _, path = packed_pipeline_dir
    data = _recipe(path, tmp_path / "out")
    data["model"] = {"name": str(path)}  # no r set: TextPecker's Flux/QwenImage default applies
    proc = subprocess.run([VERIRL, "train", str(write_recipe(data)), "--dry-run"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "LoRA r=64)" in proc.stdout


@pytest.mark.parametrize("packed_pipeline_dir", ["flux", "qwen"], indirect=True)
def test_packed_pipelines_recompute_log_probs_train_the_lora_and_it_loads(packed_pipeline_dir, tmp_path):
    kind, path = packed_pipeline_dir
    pipe = load_pipeline(str(path))
    sampling = PACKED[kind]["sampling"]
    config = FlowGRPOConfig(noise_level=0.8, sde_window=2, group_size=4, prompts_per_step=2, learning_rate=1e-2,
                            clip_range=0.5, kl_beta=0.1, **sampling)  # fmt: skip
    trainer = FlowGRPOTrainer(pipe, config, [brightness_reward])  # default LoRA: TextPecker's for this backbone
    lora_config = pipe.transformer.peft_config["default"]
    r, alpha, feed_forward = PACKED[kind]["lora"]
    assert (lora_config.r, lora_config.lora_alpha) == (r, alpha) and feed_forward in lora_config.target_modules
    gen = trainer.generator
    emb = gen.encode(["12", "345"])
    out = gen.sample(emb, seed=0)
    for j, i in enumerate(out["step_indices"].tolist()):
        v = gen.velocity(
            pipe.transformer, out["trajectory"][:, j], out["timesteps"][i], emb, sampling["guidance_scale"]
        )
        _, lp = sde_step(v, out["trajectory"][:, j], out["sigmas"][i], out["sigmas"][i + 1], 0.8,
                         float(out["sigmas"][1]), out["trajectory"][:, j + 1])  # fmt: skip
        assert torch.allclose(lp, out["log_probs"][:, j], atol=1e-4)
    named = dict(pipe.transformer.named_parameters())
    lora = {n: p.detach().clone() for n, p in named.items() if p.requires_grad}
    frozen = {n: p.detach().clone() for n, p in named.items() if not p.requires_grad}
    assert trainer.step(["12", "345"])["metrics"]["trained_samples"] == 8
    unchanged = {n for n, p in lora.items() if torch.equal(named[n], p)}
    # QwenImage's last block discards its text stream: its text-side LoRA gets no gradient (Flux feeds it onward)
    text_side = ("attn.add_q_proj.lora_B", "attn.to_add_out", "txt_mlp")
    assert unchanged == ({n for n in lora if any(t in n for t in text_side)} if kind == "qwen" else set())
    assert all(torch.equal(named[n], p) for n, p in frozen.items())
    assert trainer.step(["12", "345"])["metrics"]["kl"] > 0
    trainer.save_lora(tmp_path / "lora")
    fresh = load_pipeline(str(path))
    fresh.load_lora_weights(str(tmp_path / "lora"))
    call = {k: v[:1] if isinstance(v, list) else v for k, v in PACKED[kind]["call"].items()}
    image = fresh("12", num_inference_steps=2, height=32, width=64, **call).images[0]
    assert image.size == (64, 32)


def _recipe(pipeline_dir, out, **args):
    return {
        "trainer": "flow_grpo",
        "model": {"name": str(pipeline_dir), "lora": {"r": 4, "lora_alpha": 8}},
        "data": {"builtin": "glyph", "n_train": 20, "n_eval": 4, "max_len": 3},
        "rewards": [{"name": "brightness"}],
        "args": {"num_inference_steps": 4, "guidance_scale": 2.0, "sde_window": 2, "height": 32, "width": 64,
                 "max_sequence_length": 1, "group_size": 2, "prompts_per_step": 2, "max_steps": 2,
                 "save_steps": 1, "image_log_steps": 1, **args},
        "eval": {"threshold": 0.5},
        "output_dir": str(out),
    }  # fmt: skip


def test_verirl_train_runs_flow_grpo_end_to_end_and_the_lora_loads(tiny_pipeline_dir, write_recipe, tmp_path):
    out = tmp_path / "run"
    recipe = write_recipe(_recipe(tiny_pipeline_dir, out, ema=True, kl_beta=0.01, report_to=["tensorboard", "trackio"],
                                  project="verirl-test"))  # fmt: skip
    env = {**os.environ, "TRACKIO_DIR": str(tmp_path / "trackio")}
    proc = subprocess.run([VERIRL, "train", str(recipe)], capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((out / "eval_results.json").read_text())
    assert results["train"]["steps"] == 2 and {"before", "after"} <= set(results)
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == [1, 2] and all("rewards/brightness" in r for r in lines)
    assert (out / "checkpoint-1" / "trainer_state.json").is_file() and (out / "eval_after.png").is_file()
    assert list((out / "runs").iterdir())  # tensorboard events
    logs = _trackio_logs(env, "verirl-test", "run")  # the run is named after its output directory
    assert [r["step"] for r in logs if "reward" in r] == [1, 2]
    images = {k: r[k] for r in logs for k in r if k in ("rollouts", "eval_before", "eval_after")}
    assert set(images) == {"rollouts", "eval_before", "eval_after"}
    assert all((tmp_path / "trackio" / "media" / v["file_path"]).is_file() for v in images.values())
    card = (out / "README.md").read_text()
    assert "text-to-image" in card and "load_lora_weights" in card
    pipe = load_pipeline(str(tiny_pipeline_dir))
    pipe.load_lora_weights(str(out))  # diffusers' own loader reads what we saved
    assert any("lora" in n for n, _ in pipe.transformer.named_parameters())
    image = pipe("12", height=32, width=64, num_inference_steps=2, max_sequence_length=1).images[0]
    assert image.size == (64, 32)

    # --resume continues after the last complete checkpoint; nothing already written is lost
    proc = subprocess.run([VERIRL, "train", str(out / "recipe.yaml"), "--resume", "--set", "args.max_steps=3"],
                          capture_output=True, text=True, timeout=600, env=env)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3]
    assert [r["step"] for r in _trackio_logs(env, "verirl-test", "run") if "reward" in r] == [1, 2, 3]
    assert (out / "checkpoint-1").is_dir() and (out / "checkpoint-3").is_dir()


def _trackio_logs(env: dict[str, str], project: str, run: str) -> list[dict]:
    """What trackio stored for a run, read back by trackio itself (it fixes its directory at import)."""
    code = ("import json, sys; from trackio.sqlite_storage import SQLiteStorage as S; "
            "print(json.dumps(S.get_logs(sys.argv[1], sys.argv[2]), default=str))")  # fmt: skip
    proc = subprocess.run([sys.executable, "-c", code, project, run], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"args": {"noise_level": 0}}, "args.noise_level: expected > 0"),
        ({"args": {"group_size": 1}}, "args.group_size: GRPO needs at least 2 images per prompt"),
        ({"args": {"preset": "sdxl"}}, "args.preset: unknown 'sdxl'"),
        ({"args": {"num_generations": 4}}, "args.num_generations"),
        ({"args": {"report_to": ["wandb"]}}, "args.report_to: expected any of tensorboard, trackio, none"),
        ({"generator": {"backend": "hf"}}, "generator.backend: expected one of: diffusers for trainer flow_grpo"),
        ({"model": {"name": "/nonexistent/pipe"}}, "model: /nonexistent/pipe: no such directory"),
        ({"model": {"name": "tests", "lora": {"r": 4}}}, "no model_index.json"),
        ({"model": {"name": "PIPE", "lora": {"rank": 4}}}, "model.lora.rank"),
    ],
)
def test_bad_recipes_fail_in_one_line(tiny_pipeline_dir, write_recipe, tmp_path, change, message):
    data = _recipe(tiny_pipeline_dir, tmp_path / "out")
    for key, value in change.items():
        if key == "model" and value["name"] == "PIPE":
            value = {**value, "name": str(tiny_pipeline_dir)}
        data[key] = {**data[key], **value} if key in ("args",) else value
    proc = subprocess.run([VERIRL, "train", str(write_recipe(data)), "--dry-run"], capture_output=True, text=True)
    assert proc.returncode != 0
    assert message in proc.stderr and "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_a_prompt_longer_than_the_tokenizer_allows_stops_the_run_in_one_line(tiny_pipeline_dir, write_recipe,
                                                                               tmp_path):  # fmt: skip
    data = _recipe(tiny_pipeline_dir, tmp_path / "out")
    data["data"] = {"builtin": "glyph", "n_train": 20, "n_eval": 4, "min_len": 7, "max_len": 8}
    proc = subprocess.run([VERIRL, "train", str(write_recipe(data))], capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert "tokens, the pipeline's tokenizer allows 8" in proc.stderr and "Traceback" not in proc.stderr


def test_presets_fill_only_unset_fields():
    from verirl.rl.config import build_trainer_config

    config = build_trainer_config("flow_grpo", {"preset": "sd3.5-medium", "group_size": 4}, "out")
    assert (config.num_inference_steps, config.noise_level, config.sde_window, config.clip_range) == (
        40,
        0.9,
        12,
        2e-6,
    )
    assert config.group_size == 4 and config.ema is True and config.ratio_norm is True  # the release's clip needs it


@two_processes
def test_two_processes_train_one_lora(tiny_pipeline_dir, write_recipe, tmp_path):
    """accelerate with 2 gloo processes: DDP over the LoRA (some of whose weights get no gradient) works."""
    out = tmp_path / "run2"
    recipe = write_recipe(_recipe(tiny_pipeline_dir, out, save_steps=0, image_log_steps=0))
    proc = subprocess.run([VERIRL, "train", str(recipe), "--num-processes", "2"], capture_output=True, text=True,
                          timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((out / "eval_results.json").read_text())
    assert results["train"]["processes"] == 2 and results["train"]["steps"] == 2
    assert (out / "pytorch_lora_weights.safetensors").is_file()
