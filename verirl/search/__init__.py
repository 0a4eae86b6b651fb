"""The search agent: a small planner that calls search tools over several turns, a frozen answer generator that
answers from what the searches returned, and retrieval-fidelity rewards for training the planner with GRPO.

After M³Searcher (arXiv 2601.09278), which decouples *information acquisition* (a trainable planner calling text and
image search) from *answer derivation* (a frozen answer generator), and trains the planner on a multi-objective
reward: factual accuracy + reasoning soundness + retrieval fidelity. The paper does not publish the reward's
formulas or weights; ours (:mod:`verirl.search.rewards`) are a reconstruction, documented as such, drawing on s3
(arXiv 2505.14146: a searcher trained against a frozen generator), Search-R1 (arXiv 2503.09516) and AutoRefine
(arXiv 2505.11277: answer-in-evidence recall).

Modules: :mod:`~verirl.search.corpus` (passages), :mod:`~verirl.search.text_index` (hybrid BM25 + dense
retrieval), :mod:`~verirl.search.image_index` (reverse image search), :mod:`~verirl.search.service` (the retriever
over HTTP), :mod:`~verirl.search.environment` (the tools as a TRL environment), :mod:`~verirl.search.answerer`
(the frozen answer generator), :mod:`~verirl.search.rewards`, :mod:`~verirl.search.tasks` (built-in questions).
See docs/search_agent.md.
"""
