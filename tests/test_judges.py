"""The LLM judge and the FlashEvaluator as verifiers (entry points llm_judge, flash_evaluator): their verdicts are
recomputed from the models' own outputs, and both work as mixture members."""

from __future__ import annotations

import math

import pytest

from verirl.verifiers.registry import resolve_verifier, verdict_uncertainty


@pytest.fixture(scope="module")
def judge(tiny_model_dir):
    return resolve_verifier("llm_judge", {"model": str(tiny_model_dir), "batch_size": 2})


def test_judge_reads_score_and_confidence_from_the_answer_token(judge):
    import torch

    prompts = [[{"role": "user", "content": "What is 2+2?"}], "What is 3+3?", [{"role": "user", "content": "2+5?"}]]
    completions = ["4", "7", "7"]
    verdicts = judge.verify_batch(prompts, completions)  # batched with left padding, 2 per forward pass
    tol = 1e-4 if judge.device == "cpu" else 2e-2  # bf16 on a GPU: padded batches round differently
    for prompt, completion, verdict in zip(prompts, completions, verdicts, strict=True):
        text = judge.judge_text(prompt, completion, {})
        assert "<|im_start|>assistant" in text and completion in text
        ids = judge.tokenizer(text, return_tensors="pt", add_special_tokens=False).to(judge.device)
        with torch.inference_mode():
            probs = torch.softmax(judge.model(**ids).logits[0, -1].float(), dim=-1)
        yes = sum(float(probs[t]) for t, v in judge.label_tokens.items() if v == 1.0)
        no = sum(float(probs[t]) for t, v in judge.label_tokens.items() if v == 0.0)
        score = yes / (yes + no)
        entropy = -(score * math.log(score) + (1 - score) * math.log(1 - score)) / math.log(2)
        assert verdict.score == pytest.approx(score, abs=tol)
        assert verdict_uncertainty(verdict) == pytest.approx(1 - (1 - entropy) * (yes + no), abs=tol)
        assert verdict.details["mass"] == pytest.approx(yes + no, abs=tol / 10)


def test_judge_template_columns_and_bad_settings(tiny_model_dir, judge):
    from verirl.errors import VerirlError

    custom = resolve_verifier(
        "llm_judge",
        {"model": str(tiny_model_dir), "template": "{prompt} = {completion}? Gold: {answer}", "chat": False},
    )
    assert custom.judge_text("1+1", "2", {"answer": "2", "other": "x"}) == "1+1 = 2? Gold: 2"
    with pytest.raises(KeyError, match=r"needs column\(s\) \['answer'\]"):
        custom.verify("1+1", "2")
    assert 0.0 <= custom.verify("1+1", "2", answer="2").score <= 1.0
    for args, message in [
        ({"template": "no field"}, "template: expected a {completion} field"),
        ({"labels": {"yes": 2.0}}, "labels: expected a mapping answer -> score in"),
        ({"batch_size": 0}, "batch_size"),
    ]:
        with pytest.raises(VerirlError, match=message):
            resolve_verifier("llm_judge", {"model": str(tiny_model_dir), **args})


def test_judge_is_a_mixture_member_and_its_failures_are_counted(tiny_model_dir):
    from verirl.verifiers.mixture_reward import MixtureReward

    template = "{prompt} {completion} {answer}"
    mixture = MixtureReward(
        ["exact_answer", {"name": "llm_judge", "args": {"model": str(tiny_model_dir), "template": template}}]
    )
    rewards = mixture(["1+1?", "1+1?"], ["2", "3"], answer=["2", "2"])
    assert all(0.0 <= r <= 1.0 for r in rewards)
    assert mixture.members[1].guard.failed == 0
    assert mixture(["1+1?"], ["2"]) == [None]  # no answer column: exact_answer does not apply, the judge fails
    assert mixture.members[1].guard.failed == 1


def test_flash_evaluator_verifier_scores_each_prompts_group_jointly(tmp_path):
    import torch

    from tests.test_flash_evaluator import SMALL
    from verirl.verifiers.flash_evaluator import FlashEvaluator, FlashEvaluatorConfig

    torch.manual_seed(0)
    FlashEvaluator(FlashEvaluatorConfig(**SMALL)).save_pretrained(tmp_path / "evaluator")
    verifier = resolve_verifier("flash_evaluator", {"model": str(tmp_path / "evaluator")})
    prompts = ["What is 2+3?", "What is 1+1?", "What is 2+3?", "What is 2+3?", "What is 9+9?"]
    completions = ["5", "2", "6", "5 apples", "18"]
    verdicts = verifier.verify_batch(prompts, completions)
    logits = verifier.evaluator.score_group("What is 2+3?", ["5", "6", "5 apples"])
    probs = torch.softmax(torch.tensor(logits), dim=0)
    entropy = float(-(probs * probs.log()).sum() / math.log(3))
    for i, logit in zip([0, 2, 3], logits, strict=True):
        assert verdicts[i].score == pytest.approx(math.exp(logit - max(logits)), abs=1e-5)
        assert verdict_uncertainty(verdicts[i]) == pytest.approx(entropy, abs=1e-5)
    assert max(verdicts[i].score for i in (0, 2, 3)) == pytest.approx(1.0)
    for lone in (1, 4):  # one completion of its prompt: no comparison possible
        assert verdicts[lone].score == 1.0 and verdict_uncertainty(verdicts[lone]) == 1.0
