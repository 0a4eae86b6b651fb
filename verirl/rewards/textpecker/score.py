"""TextPecker's two scores, as the paper defines them (arXiv 2602.20903; docs/textpecker.md).

* Semantic alignment ``S_E = 1 - (sum of matched NED + | |P| - |T| |) / max(|T|, |P|)``: target T and recognised
  text P are lowercased, split on whitespace, CJK split into single characters (Latin runs stay words), and words
  are paired by Hungarian matching (scipy) on the normalised edit distance (rapidfuzz); unmatched words cost 1 each.
* Structural quality ``S_Q = clip(1 - omega * N_a / N_P, 0, 1)``: N_a characters flagged as structurally
  anomalous, N_P non-whitespace recognised characters; omega = 5 for training (the paper's ablation), 1 for
  evaluation (the released evaluation reward).

Paper: the formulas, the tokenisation and omega. Ours: both scores of an empty pair are 1 (nothing asked, nothing
drawn); S_Q with no recognised text is 0 (there are no sound glyphs to credit), reported with a reason upstream.
Ours too (on by default, ``unread: anomaly``): a target character the OCR did not read at all counts in S_Q as a
flawed one. The paper's recogniser writes ``<#>`` for a glyph too flawed to recognise, which counts in N_a and N_P;
an OCR drops it instead, and without this a glyph damaged past reading would score better than one damaged a little
(and a policy could raise S_Q by leaving out the glyphs it draws badly).
"""

from __future__ import annotations

import re

_CJK = (
    "\u2e80-\u2fdf\u3040-\u30ff\u3100-\u312f\u3190-\u31ff\u3400-\u4dbf\u4e00-\u9fff"
    "\uac00-\ud7af\uf900-\ufaff\U00020000-\U0002fa1f"
)
_WORD = re.compile(rf"[{_CJK}]|[^\s{_CJK}]+")


def words(text: str) -> list[str]:
    """Lowercased words; each CJK character is a word of its own ("Hello世界" -> ["hello", "世", "界"])."""
    return _WORD.findall(text.lower())


def semantic_score(target: str, recognized: str) -> float:
    """S_E in [0, 1]: 1 when the recognised words equal the target's, 0 when nothing matches."""
    from rapidfuzz.distance import Levenshtein
    from scipy.optimize import linear_sum_assignment

    t, p = words(target), words(recognized)
    if not t and not p:
        return 1.0
    if not t or not p:
        return 0.0
    cost = [[Levenshtein.normalized_distance(a, b) for b in p] for a in t]
    rows, cols = linear_sum_assignment(cost)
    matched = sum(cost[r][c] for r, c in zip(rows, cols, strict=True))
    return max(0.0, 1.0 - (matched + abs(len(p) - len(t))) / max(len(t), len(p)))


def unread_characters(target: str, recognized: str) -> int:
    """How many non-whitespace target characters the recognised text has no counterpart for: in a minimal
    case-insensitive edit alignment (rapidfuzz), characters only in the target, and the target's surplus where a span
    was read as fewer characters (a character read as another one stays S_E's business)."""
    from rapidfuzz.distance import Levenshtein

    t, p = target.lower(), recognized.lower()
    count = 0
    for op, a0, a1, b0, b1 in Levenshtein.opcodes(p, t):
        if op in ("insert", "replace"):
            count += max(0, _non_space(t[b0:b1]) - _non_space(p[a0:a1]))
    return count


def _non_space(text: str) -> int:
    return sum(not ch.isspace() for ch in text)


def structural_score(recognized: str, n_anomalies: float, omega: float = 5.0, unread: int = 0) -> float:
    """S_Q in [0, 1] from the number of flagged characters among the recognised non-whitespace characters (or their
    expected number: the sum of their anomaly probabilities). ``unread`` target characters the recogniser did not
    read count as flawed characters read as the paper's ``<#>`` (both in N_a and in N_P)."""
    n = _non_space(recognized) + unread
    if n == 0:
        return 0.0
    return min(1.0, max(0.0, 1.0 - omega * (n_anomalies + unread) / n))
