"""SASRec (Kang & McAuley, ICDM 2018, arXiv 1808.09781): a sequential baseline on our MovieLens-100k split.

The network is RecBole's own ``recbole.model.sequential_recommender.sasrec.SASRec`` (recbole 1.2.1, the pin that
ships the data); verirl supplies the training loop, the validation-based early stopping and the full ranking.

Using RecBole's class. Its constructor reads a handful of keys from ``config`` (``config[key]``: a plain dict
serves) and ``dataset.num(ITEM_ID)`` (the item count, padding included), so neither RecBole's ``Config`` (yaml
files, argument parsing, logging set-up) nor its data pipeline is needed; ``calculate_loss`` and
``full_sort_predict`` take a dict of tensors in place of an ``Interaction``. The one obstacle is the import: the
class's module imports ``recbole.utils``, which imports ``texttable`` and ``colorama`` at module level (and
``torch.utils.tensorboard``, that is the ``tensorboard`` package), while recbole is installed with ``--no-deps``
(it is there for its data files), so a bare import fails with ``ModuleNotFoundError: No module named
'texttable'`` (then ``'colorama'``). These are used only by RecBole's logger set-up, its hyper-parameter tables and
its TensorBoard writer, none of which the model touches: :func:`recbole_sasrec_class` imports the class with a
placeholder module standing in for each one that is missing (one that raises if anything calls into it), and
removes the placeholders from ``sys.modules`` afterwards. Where the real packages are installed they are used.
The import has one side effect that is undone: the package ``__init__`` imports every sequential model, and
``sine.py`` switches on ``torch.autograd.set_detect_anomaly(True)`` for the whole process (a NaN check after every
autograd op: training ran about 2x slower); the caller's setting is restored.

The paper's, RecBole's and ours:

* Paper: item embedding + learned positional embedding, stacked causal self-attention blocks (residual, LayerNorm,
  dropout, point-wise feed-forward), item embeddings shared with the output layer, padding id 0; binary
  cross-entropy with one sampled negative at every position; Adam (lr 1e-3, batch 128); on ML-1M d = 50, 2 blocks,
  1 head, max length 200, dropout 0.2 (0.5 on the sparse datasets).
* RecBole's class (kept as is): 2 heads, a BERT-style GELU feed-forward (inner size 256) instead of the 1x1
  convolution with ReLU, LayerNorm on the input embeddings, the prediction read at the last real position only
  (RecBole turns every prefix of a sequence into a training case instead), and ``loss_type="CE"``: softmax
  cross-entropy over the whole catalogue, the strong modern variant (Klenitskiy & Vasilev, RecSys 2023).
* Ours: hidden 64, 2 layers, 2 heads, init std 0.02 (RecBole's defaults); inner size 64 (the paper's d -> d
  feed-forward, not RecBole's 256: a quarter of the feed-forward cost, training is ~1.5x faster on one thread);
  dropout 0.2 on attention and hidden states (the paper's ML-1M value; on our validation cases, seed 0, NDCG@10 was
  0.072 against 0.065 with RecBole's 0.5); max length 10 (our window). Every ``ml.train`` sample is one training
  case, its history (at most 10 items, oldest first) predicting its target: since the split has one sample per (user,
  position), this is RecBole's prefix augmentation cut to the window, and no shifted-sequence loss is needed (it
  would only add shorter-context copies of cases that are already there). Adam, lr 2e-3 (twice the paper's, meant to
  need fewer epochs; not compared with 1e-3), batch 256, no weight decay; after every epoch NDCG@10 on a seeded
  sample of 1,000 ``ml.valid`` cases, stopping after ``patience`` (3) epochs without improvement and restoring the
  best epoch's weights (on the real split the best epoch was 6, 13 and 14 for seeds 0, 1, 2: 2.5-4.5 min of training
  at ~18 s an epoch on one shared CPU thread). Items are renumbered 1..N in id order (0 is padding). Ranking scores
  every catalogue item and returns the top k; history items are not excluded (the generative models may repeat one),
  ``exclude_history=True`` gives the variant that drops them. Everything runs on the CPU under
  ``torch.random.fork_rng``, so a seed gives the same model and the caller's random state is left alone.
"""

from __future__ import annotations

import copy
import importlib
import importlib.util
import sys
import time
import types
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import torch

from verirl.errors import VerirlError
from verirl.rec.metrics import ranking_metrics
from verirl.rec.movielens import MovieLens, Sample
from verirl.rec.tasks import sample_of

ITEM_ID = "item_id"
ITEM_SEQ = ITEM_ID + "_list"
ITEM_SEQ_LEN = "item_length"

# The placeholders: (module, the attributes RecBole imports from it, the distribution whose absence calls for one).
_PLACEHOLDERS = (
    ("texttable", ("Texttable",), "texttable"),
    ("colorama", ("init",), "colorama"),
    ("torch.utils.tensorboard", ("SummaryWriter",), "tensorboard"),
)


def _unavailable(module: str, name: str) -> Any:
    def call(*args: Any, **kwargs: Any) -> Any:
        raise VerirlError(f"{module}.{name}: not installed (verirl uses RecBole's SASRec class only)")

    return call


@contextmanager
def _placeholders() -> Iterator[None]:
    added = []
    for module, names, dist in _PLACEHOLDERS:
        if module in sys.modules or importlib.util.find_spec(dist) is not None:
            continue
        stub = types.ModuleType(module)
        for name in names:
            setattr(stub, name, _unavailable(module, name))
        sys.modules[module] = stub
        added.append((module, stub))
    try:
        yield
    finally:
        for module, stub in added:
            if sys.modules.get(module) is stub:
                del sys.modules[module]


@lru_cache(maxsize=1)
def recbole_sasrec_class() -> type[torch.nn.Module]:
    """``recbole.model.sequential_recommender.sasrec.SASRec`` (see the module docstring for the placeholders)."""
    if importlib.util.find_spec("recbole") is None:
        raise VerirlError("SASRec: the 'recbole' package is not installed (pip install --no-deps recbole==1.2.1)")
    anomaly = torch.is_anomaly_enabled(), torch.is_anomaly_check_nan_enabled()
    try:
        with _placeholders():
            module = importlib.import_module("recbole.model.sequential_recommender.sasrec")
    finally:
        # recbole/model/sequential_recommender/sine.py calls torch.autograd.set_detect_anomaly(True) on import, which
        # the package's __init__ runs: undone here (it makes every backward pass in the process ~2x slower).
        torch.autograd.set_detect_anomaly(*anomaly)
    return module.SASRec


class _Catalogue:
    """The ``dataset`` RecBole's constructor reads: only ``num(field)`` (the item count, padding id 0 included)."""

    def __init__(self, n_items: int) -> None:
        self.n_items = n_items

    def num(self, field_name: str) -> int:
        if field_name != ITEM_ID:
            raise KeyError(field_name)
        return self.n_items


def recbole_config(**hyper: Any) -> dict[str, Any]:
    """The keys RecBole's ``SequentialRecommender`` and ``SASRec`` constructors read (a dict stands in for Config)."""
    return {
        "USER_ID_FIELD": "user_id",
        "ITEM_ID_FIELD": ITEM_ID,
        "LIST_SUFFIX": "_list",
        "ITEM_LIST_LENGTH_FIELD": ITEM_SEQ_LEN,
        "NEG_PREFIX": "neg_",
        "device": torch.device("cpu"),
        "loss_type": "CE",
        "hidden_act": "gelu",
        "layer_norm_eps": 1e-12,
        "initializer_range": 0.02,
        **hyper,
    }


@dataclass
class SASRecModel:
    net: torch.nn.Module  # RecBole's SASRec, in eval mode
    item_ids: list[int]  # index - 1 -> item id (index 0 is padding)
    max_len: int
    config: dict[str, Any]
    best_epoch: int  # 1-based; 0 when no epoch ran
    train_seconds: float
    valid_curve: list[float] = field(default_factory=list)  # the validation metric after each epoch

    def __post_init__(self) -> None:
        self.index = {item: i + 1 for i, item in enumerate(self.item_ids)}

    def encode(self, histories: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Histories (oldest first) -> right-padded index sequences of their last ``max_len`` items, and lengths."""
        seq = torch.zeros(len(histories), self.max_len, dtype=torch.long)
        lengths = torch.ones(len(histories), dtype=torch.long)  # an empty history reads position 0 (padding only)
        for row, history in enumerate(histories):
            tail = list(history)[-self.max_len :]
            try:
                seq[row, : len(tail)] = torch.tensor([self.index[i] for i in tail], dtype=torch.long)
            except KeyError as e:
                raise VerirlError(f"SASRec: item {e.args[0]} is not in the catalogue") from None
            lengths[row] = max(len(tail), 1)
        return seq, lengths

    def recommend(
        self, histories: Sequence[Sequence[int]], k: int = 10, exclude_history: bool = False, batch_size: int = 1024
    ) -> list[list[int]]:
        return recommend(self, histories, k=k, exclude_history=exclude_history, batch_size=batch_size)


def _scores(model: SASRecModel, seq: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    scores = model.net.full_sort_predict({ITEM_SEQ: seq, ITEM_SEQ_LEN: lengths})  # [B, n_items + 1]
    scores[:, 0] = float("-inf")  # padding
    return scores


def recommend(
    model: SASRecModel,
    histories: Sequence[Sequence[int]],
    k: int = 10,
    exclude_history: bool = False,
    batch_size: int = 1024,
) -> list[list[int]]:
    """The top ``k`` item ids (best first) for each history, out of every catalogue item."""
    k = min(k, len(model.item_ids))
    out: list[list[int]] = []
    was_training = model.net.training
    model.net.eval()
    try:
        with torch.inference_mode():
            for start in range(0, len(histories), batch_size):
                seq, lengths = model.encode(histories[start : start + batch_size])
                scores = _scores(model, seq, lengths)
                if exclude_history:
                    scores.scatter_(1, seq, float("-inf"))
                values, top = torch.topk(scores, k, dim=1)
                for row, ok in zip(top.tolist(), torch.isfinite(values).tolist(), strict=True):
                    out.append([model.item_ids[i - 1] for i, keep in zip(row, ok, strict=True) if keep])
    finally:
        model.net.train(was_training)
    return out


def evaluate_model(
    model: SASRecModel, samples: Sequence[Sample], exclude_history: bool = False, ks: Sequence[int] = (1, 5, 10)
) -> dict[str, float]:
    """:func:`ranking_metrics` of the model's top ``max(ks)`` on ``samples``."""
    ranked = recommend(model, [s.history for s in samples], k=max(ks), exclude_history=exclude_history)
    return ranking_metrics(ranked, [s.target for s in samples], ks)


def train_sasrec(
    ml: MovieLens,
    *,
    seed: int = 0,
    epochs: int = 50,
    batch_size: int = 256,
    lr: float = 2e-3,
    weight_decay: float = 0.0,
    hidden_size: int = 64,
    n_layers: int = 2,
    n_heads: int = 2,
    inner_size: int = 64,
    dropout: float = 0.2,
    max_len: int = 10,
    n_valid: int | None = 1000,
    valid_seed: int = 0,
    patience: int = 3,
    metric: str = "ndcg@10",
    max_seconds: float | None = None,
    log: bool = False,
) -> SASRecModel:
    """Train RecBole's SASRec on ``ml.train`` (see the module docstring), early-stopped on ``ml.valid``.

    ``n_valid=0`` (or an empty ``ml.valid``): no validation, the training loss stands in for the metric (patience
    and best epoch included); ``max_seconds`` stops after the epoch that crosses it (the best epoch so far is kept).
    ``valid_curve`` holds the metric after every epoch (minus the training loss without validation)."""
    if not ml.train:
        raise VerirlError("SASRec: no training samples")
    if epochs < 1 or max_len < 1 or patience < 1:
        raise VerirlError(f"SASRec: epochs, max_len and patience must be >= 1 (got {epochs}, {max_len}, {patience})")
    sasrec = recbole_sasrec_class()
    item_ids = sorted(ml.items)
    config = recbole_config(
        MAX_ITEM_LIST_LENGTH=max_len,
        n_layers=n_layers,
        n_heads=n_heads,
        hidden_size=hidden_size,
        inner_size=inner_size,
        hidden_dropout_prob=dropout,
        attn_dropout_prob=dropout,
    )
    valid = sample_of(ml.valid, n_valid, valid_seed) if n_valid != 0 else []
    start = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = sasrec(config, _Catalogue(len(item_ids) + 1))
        model = SASRecModel(net, item_ids, max_len, config, best_epoch=0, train_seconds=0.0)
        seq, lengths = model.encode([s.history for s in ml.train])
        try:
            targets = torch.tensor([model.index[s.target] for s in ml.train], dtype=torch.long)
        except KeyError as e:
            raise VerirlError(f"SASRec: target item {e.args[0]} is not in the catalogue") from None
        optimizer = torch.optim.Adam(net.parameters(), lr=lr, weight_decay=weight_decay)
        generator = torch.Generator().manual_seed(seed)
        best, best_state, stale = float("-inf"), None, 0
        for epoch in range(1, epochs + 1):
            net.train()
            total = 0.0
            for batch in torch.randperm(len(targets), generator=generator).split(batch_size):
                loss = net.calculate_loss(
                    {ITEM_SEQ: seq[batch], ITEM_SEQ_LEN: lengths[batch], ITEM_ID: targets[batch]}
                )
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                total += loss.item() * len(batch)
            score = evaluate_model(model, valid)[metric] if valid else -total
            model.valid_curve.append(score)
            if log:
                print(f"sasrec epoch {epoch}: loss={total / len(targets):.4f} valid {metric}={score:.4f}", flush=True)
            if score > best:
                best, best_state, stale, model.best_epoch = score, copy.deepcopy(net.state_dict()), 0, epoch
            else:
                stale += 1
            if stale >= patience or (max_seconds is not None and time.perf_counter() - start > max_seconds):
                break
        if best_state is not None:
            net.load_state_dict(best_state)
    net.eval()
    model.train_seconds = time.perf_counter() - start
    return model


def evaluate_sasrec(
    ml: MovieLens,
    n_eval: int | None = 1000,
    eval_seed: int = 0,
    seed: int = 0,
    exclude_history: bool = False,
    **kw: Any,
) -> dict[str, float]:
    """Train (``seed``, ``**kw`` to :func:`train_sasrec`) and score ``sample_of(ml.test, n_eval, eval_seed)``:
    the :func:`ranking_metrics` plus ``train_seconds`` and ``best_epoch``."""
    model = train_sasrec(ml, seed=seed, **kw)
    metrics = evaluate_model(model, sample_of(ml.test, n_eval, eval_seed), exclude_history=exclude_history)
    return {**metrics, "train_seconds": model.train_seconds, "best_epoch": float(model.best_epoch)}
