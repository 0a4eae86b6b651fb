"""Verifier mixtures: many verifiers, some unsure, fused into one reward.

After VRec's fusion of a mixture of verifiers (arXiv 2603.07725: a router g, each verifier's normalised entropy Ĥ_i,
the uncertainty ω = Σ g_i Ĥ_i, the verified state r* = (1 − ω) r + ω G pulled toward a guide G when the verifiers are
unsure). VRec fuses hidden states inside a recommender; carrying the same shape over to *rewards* is our design
(docs/verifier_mixtures.md), with ideas from ArmoRM's prompt-gated objectives, CGPO's constraint judges
(arXiv 2409.20370) and uncertainty-weighted reward ensembles (Coste et al., arXiv 2310.02743):

    A   = members whose score is not None (those that apply to this sample)
    ĝ_i = g_i / Σ_{j∈A} g_j                               the gate (from the prompt only), restricted to A
    w_i = ĝ_i (1 − u_i)^α / Σ_{j∈A} ĝ_j (1 − u_j)^α       confident members count more (w = ĝ if that sum is 0)
    S   = Σ_{i∈A} w_i s_i          ω = Σ_{i∈A} ĝ_i u_i
    G   = min_{i∈A} s_i ("min") | Σ ĝ_i s_i ("mean") | a constant
    R   = (1 − ω) S + ω G          None if A is empty or ω > abstain_above

Scores s_i and uncertainties u_i are in [0, 1]; u_i is a class distribution's normalised entropy, 1 − a judge's
confidence, or 0 for a deterministic check. α = 0 with a uniform gate and certain members is the plain mean.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

GUIDES = ("min", "mean")


def _unit(value: float, what: str, index: int) -> float:
    value = float(value)
    if not 0.0 <= value <= 1.0:  # NaN fails too
        raise ValueError(f"{what}[{index}]: expected a number in [0, 1], got {value}")
    return value


def mix(
    scores: Sequence[float | None],
    gate: Sequence[float] | None = None,
    uncertainty: Sequence[float] | None = None,
    *,
    alpha: float = 1.0,
    guide: str | float = "min",
    abstain_above: float | None = None,
) -> tuple[float | None, float]:
    """``(reward, omega)`` of one sample from its members' ``scores`` (None: not applicable), the gate's weights
    (default uniform; non-negative) and the members' uncertainties (default 0). See the module docstring."""
    n = len(scores)
    gate = [1.0] * n if gate is None else list(gate)
    uncertainty = [0.0] * n if uncertainty is None else list(uncertainty)
    if len(gate) != n or len(uncertainty) != n:
        raise ValueError(f"mix: {n} scores, {len(gate)} gate weights, {len(uncertainty)} uncertainties")
    if not (alpha >= 0 and math.isfinite(alpha)):
        raise ValueError(f"alpha: expected a finite number >= 0, got {alpha}")
    if isinstance(guide, str) and guide not in GUIDES:
        raise ValueError(f"guide: expected min, mean or a number in [0, 1], got {guide!r}")
    applicable = [i for i, s in enumerate(scores) if s is not None]
    s = {i: _unit(scores[i], "scores", i) for i in applicable}  # type: ignore[arg-type]
    u = {i: _unit(uncertainty[i], "uncertainty", i) for i in applicable}
    g = {i: float(gate[i]) for i in applicable}
    if any(not (w >= 0 and math.isfinite(w)) for w in g.values()):
        raise ValueError(f"gate: expected finite weights >= 0, got {[gate[i] for i in applicable]}")
    total = sum(g.values())
    if not applicable or total <= 0:
        return None, 1.0
    g_hat = {i: g[i] / total for i in applicable}
    omega = sum(g_hat[i] * u[i] for i in applicable)
    if abstain_above is not None and omega > abstain_above:
        return None, omega
    raw = {i: g_hat[i] * (1.0 - u[i]) ** alpha for i in applicable}
    norm = sum(raw.values())
    weights = {i: raw[i] / norm for i in applicable} if norm > 0 else g_hat
    combined = sum(weights[i] * s[i] for i in applicable)
    if guide == "min":
        anchor = min(s.values())
    elif guide == "mean":
        anchor = sum(g_hat[i] * s[i] for i in applicable)
    else:
        anchor = _unit(guide, "guide", 0)  # type: ignore[arg-type]
    return (1.0 - omega) * combined + omega * anchor, omega
