"""The verifier-mixture fusion (verirl.verifiers.mixture.mix) on hand-computed cases and hostile inputs."""

from __future__ import annotations

import math

import pytest

from verirl.verifiers.mixture import mix


def test_alpha_zero_uniform_gate_certain_members_is_the_mean():
    reward, omega = mix([0.2, 0.6, 1.0], alpha=0.0)
    assert reward == pytest.approx(0.6) and omega == 0.0


def test_hand_computed_mixture():
    # gate 1:3, uncertainties 0.5 and 0: ĝ = (.25, .75), w ∝ (.125, .75) -> (1/7, 6/7), ω = .125, guide min = .2
    reward, omega = mix([0.2, 0.9], gate=[1, 3], uncertainty=[0.5, 0.0], alpha=1.0, guide="min")
    combined = 0.2 / 7 + 0.9 * 6 / 7
    assert omega == pytest.approx(0.125)
    assert reward == pytest.approx((1 - 0.125) * combined + 0.125 * 0.2)
    reward_mean, _ = mix([0.2, 0.9], gate=[1, 3], uncertainty=[0.5, 0.0], guide="mean")
    assert reward_mean == pytest.approx(0.875 * combined + 0.125 * (0.25 * 0.2 + 0.75 * 0.9))
    reward_const, _ = mix([0.2, 0.9], gate=[1, 3], uncertainty=[0.5, 0.0], guide=0.5)
    assert reward_const == pytest.approx(0.875 * combined + 0.125 * 0.5)


def test_inapplicable_members_leave_the_gate_renormalised():
    with_none, omega = mix([None, 0.4, 0.8], gate=[10, 1, 1], uncertainty=[1.0, 0.0, 0.0])
    assert with_none == pytest.approx(0.6) and omega == 0.0  # the absent member's weight and doubt are gone


def test_all_unsure_members_fall_back_to_the_gate_and_the_guide():
    reward, omega = mix([0.2, 1.0], uncertainty=[1.0, 1.0], guide="min")
    assert omega == 1.0 and reward == pytest.approx(0.2)  # w = ĝ (the weighted sum is 0), then all guide


def test_abstention_and_empty_sets_give_none():
    assert mix([None, None]) == (None, 1.0)
    assert mix([]) == (None, 1.0)
    assert mix([0.5, 0.5], gate=[0, 0]) == (None, 1.0)
    reward, omega = mix([0.5, 0.7], uncertainty=[0.9, 0.7], abstain_above=0.75)
    assert reward is None and omega == pytest.approx(0.8)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"scores": [1.5]}, r"scores\[0\]: expected a number in \[0, 1\]"),
        ({"scores": [math.nan]}, r"scores\[0\]"),
        ({"scores": [0.5], "uncertainty": [-0.1]}, r"uncertainty\[0\]"),
        ({"scores": [0.5], "gate": [-1.0]}, "gate: expected finite weights"),
        ({"scores": [0.5], "gate": [math.inf]}, "gate: expected finite weights"),
        ({"scores": [0.5, 0.5], "gate": [1.0]}, "2 scores, 1 gate weights"),
        ({"scores": [0.5], "alpha": -1}, "alpha"),
        ({"scores": [0.5], "guide": "max"}, "guide"),
        ({"scores": [0.5], "guide": 2.0}, r"guide\[0\]"),
    ],
)
def test_bad_inputs_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        mix(**kwargs)


def test_a_prompt_only_factor_cancels_under_group_scaling():
    """GRPO pitfall: ω from the prompt alone scales a group's rewards by (1 − ω) and shifts them by ω G; when G is
    the same for the whole group (a constant guide), group normalisation removes both."""
    groups = [[0.1, 0.5, 0.9, 0.3], [0.0, 1.0, 1.0, 0.5]]

    def advantages(rewards):
        mean = sum(rewards) / len(rewards)
        sd = (sum((r - mean) ** 2 for r in rewards) / (len(rewards) - 1)) ** 0.5
        return [(r - mean) / sd for r in rewards]

    for group in groups:
        plain = advantages([mix([s])[0] for s in group])
        shrunk = advantages([mix([s], uncertainty=[0.6], guide=0.5)[0] for s in group])
        assert shrunk == pytest.approx(plain)
