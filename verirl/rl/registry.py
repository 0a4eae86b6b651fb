"""The trainers a recipe can name: verirl's own, installed plug-ins, and ``package.module:attribute`` paths.

``trainer: NAME`` resolves, in this order, to a declaration registered with :func:`register` (verirl's built-ins
register themselves when their module is imported), an entry point ``NAME`` in the group ``verirl.trainers``, or a
dotted path to a :class:`~verirl.rl.trainer.Trainer` object. The worker process resolves the same name the same way,
so a trainer defined outside verirl validates, dry-runs and runs with no edit to verirl.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points

from verirl.errors import VerirlError
from verirl.plugins import import_dotted
from verirl.rl.trainer import Trainer

ENTRY_POINT_GROUP = "verirl.trainers"
# Imported on first use (in this order: it is the order `--help` and errors list them in).
BUILTIN_MODULES = (
    "verirl.rl.grpo",
    "verirl.rl.dpo",
    "verirl.rl.online_dpo",
    "verirl.rl.evaluator",
    "verirl.rl.flow_grpo_run",
    "verirl.rl.sft",
    "verirl.rl.vrec",
    "verirl.rl.reward_model",
)

_TRAINERS: dict[str, Trainer] = {}
_loaded = False


def register(trainer: Trainer) -> Trainer:
    """Make ``trainer`` available by its name (returns it, so a module can write ``GRPO = register(Trainer(...))``)."""
    known = _TRAINERS.get(trainer.name)
    if known is not None and known is not trainer:
        raise ValueError(f"trainer {trainer.name!r} is already registered")
    _TRAINERS[trainer.name] = trainer
    return trainer


def _load_builtins() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        for module in BUILTIN_MODULES:
            importlib.import_module(module)


def trainer_names() -> list[str]:
    """Registered and plug-in trainer names (plug-ins are listed, not imported)."""
    _load_builtins()
    plugins = [ep.name for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name not in _TRAINERS]
    order = {module: i for i, module in enumerate(BUILTIN_MODULES)}  # built-ins first, in their documented order
    registered = sorted(_TRAINERS, key=lambda n: order.get(getattr(_TRAINERS[n].run, "__module__", ""), len(order)))
    return [*registered, *sorted(plugins)]


def get_trainer(name: str) -> Trainer:
    """The declaration behind ``name``; VerirlError (one line) when there is none."""
    _load_builtins()
    if not isinstance(name, str) or not name:
        raise VerirlError(f"expected one of: {', '.join(trainer_names())}, got {name!r}")
    if name in _TRAINERS:
        return _TRAINERS[name]
    plugins = {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}
    if name in plugins:
        try:
            found = plugins[name].load()
        except Exception as exc:  # noqa: BLE001 - a broken plug-in must name itself
            raise VerirlError(f"trainer {name!r}: plug-in {plugins[name].value!r} failed to load ({exc})") from None
    elif ":" in name:
        found = import_dotted(name, what="trainer")
    else:
        raise VerirlError(f"expected one of: {', '.join(trainer_names())}, or 'package.module:TRAINER'; got {name!r}")
    if not isinstance(found, Trainer):
        raise VerirlError(f"trainer {name!r}: expected a verirl.rl.trainer.Trainer, got {type(found).__name__}")
    return found
