"""Defense recipes: a registry, the training configuration, and the Recipe interface.

A recipe contributes its networks, optimizers and loss (or a whole ``train_step`` when it
updates several optimizers, as ACT and AFD do); the trainer (:mod:`defenses.trainer`) owns
epochs, data, LR schedules, checkpoints, resume and logging.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, ClassVar

import torch
from torch import Tensor, nn

from robustbench_lite.errors import require_number
from robustbench_lite.registry import Registry
from robustbench_lite.threat import ThreatModel

from .options import Rule, check_options

if TYPE_CHECKING:  # pragma: no cover
    from .ddp import Shard


@dataclass(frozen=True, kw_only=True)
class AttackConfig:
    """The training attack (inner maximisation): PGD through the shared engine."""

    norm: str = "linf"
    eps: float = 0.3
    steps: int = 10
    step_size: float = 0.03
    random_start: str = "uniform"

    def __post_init__(self) -> None:
        require_number("attack steps", self.steps, integer=True, minimum=1)
        require_number("attack step_size", self.step_size, minimum=0.0)

    @property
    def threat(self) -> ThreatModel:
        return ThreatModel(self.norm, self.eps)


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """Everything a run needs; presets (defenses/presets/*.toml) fill it, CLI flags override."""

    defense: str
    dataset: str = "mnist5k"
    arch: str = "small_cnn"
    arch_kwargs: dict[str, Any] = field(default_factory=dict)
    epochs: int = 10
    batch_size: int = 128
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 0.0
    milestones: tuple[int, ...] = ()     # epochs (0-based) where the LR is multiplied by gamma
    gamma: float = 0.1
    lr_schedule: tuple[tuple[int, float], ...] = ()  # explicit (epoch, lr) pairs; wins over milestones
    attack: AttackConfig = field(default_factory=AttackConfig)
    eps_warmup_epochs: int = 0  # ramp the training eps linearly over the first epochs (MNIST from scratch)
    eval_n: int = 200            # held-out slice (class-balanced from the test split) for the epoch log
    eval_steps: int = 20         # PGD steps on that slice
    seed: int = 0
    data_dir: str | None = None
    channels_last: bool = True   # NHWC conv weights: 1.1-1.4x faster training steps for small_cnn on the CPU
    amp: bool = False            # bf16 autocast for the training passes (attack + update) where bf16 is native
    options: dict[str, Any] = field(default_factory=dict)  # recipe-specific (beta, alpha, lambda, ...)

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "eval_n", "eval_steps"):
            require_number(name, getattr(self, name), integer=True, minimum=1)
        require_number("eps_warmup_epochs", self.eps_warmup_epochs, integer=True)
        require_number("lr", self.lr, strict=True)
        require_number("gamma", self.gamma, strict=True)
        for name in ("momentum", "weight_decay"):
            require_number(name, getattr(self, name))
        for m in self.milestones:
            require_number("a milestone", m, integer=True)
        for e, v in self.lr_schedule:
            require_number("an lr_schedule epoch", e, integer=True)
            require_number("an lr_schedule rate", v, strict=True)

    def lr_at(self, epoch: int, base_lr: float | None = None) -> float:
        """The LR for a 0-based epoch: explicit schedule, else milestones x gamma."""
        base = self.lr if base_lr is None else base_lr
        if self.lr_schedule:
            lr = self.lr_schedule[0][1]
            for e, v in self.lr_schedule:
                if epoch >= e:
                    lr = v
            return lr * (base / self.lr)
        return base * self.gamma ** sum(epoch >= m for m in self.milestones)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["milestones"] = list(self.milestones)
        d["lr_schedule"] = [list(p) for p in self.lr_schedule]
        return d


Members = dict[str, nn.Module]
Optimizers = dict[str, torch.optim.Optimizer]


class Recipe:
    """Base recipe: one network, SGD, ``loss`` minimised per batch.

    Subclasses set ``name`` and override ``loss`` — or ``members``/``optimizers``/``train_step``
    when they train several networks. ``option_defaults`` declares the recipe's own options (their
    types are the defaults'), ``option_rules`` their ranges or allowed values: the constructor refuses
    a bad one before anything trains (:func:`defenses.options.check_options`).

    Under torchrun (:mod:`defenses.ddp`) ``train_step`` gets this rank's rows of the global batch and
    the members that train as :class:`defenses.ddp.Replica` objects; ``self.shard`` (``None`` in a
    single process) says which rows, so a random draw of the batch's shape is drawn for the global
    batch (:func:`defenses.ddp.rand_like_batch`, :func:`defenses.ddp.on_global_batch`).
    ``ddp_find_unused``: some training pass leaves parameters of a DDP-wrapped member without a
    gradient (AFD's feature step does not reach Dc).
    """

    name: ClassVar[str] = ""
    option_defaults: ClassVar[dict[str, Any]] = {}
    option_rules: ClassVar[dict[str, Rule]] = {}  # each option's range or allowed values (defenses.options)
    eval_member: ClassVar[str] = "model"
    ddp_find_unused: ClassVar[bool] = False

    def __init__(self, cfg: TrainConfig) -> None:
        check_options(self.name, cfg.options, self.option_defaults, self.option_rules)
        self.cfg = cfg
        self.opts = {**self.option_defaults, **cfg.options}
        self.epoch = 0
        self.warmup_start = 0  # the epoch the eps warm-up counts from (ARREST: the start of stage 2)
        self.attack = cfg.attack
        self.shard: Shard | None = None  # set by the trainer under torchrun

    def set_epoch(self, epoch: int) -> None:
        """Called by the trainer before each (0-based) epoch; sets the epoch's training attack
        (eps and step ramped linearly over ``eps_warmup_epochs`` from ``warmup_start``; 0 before it)."""
        self.epoch = epoch
        w = self.cfg.eps_warmup_epochs
        scale = min(1.0, max(0.0, (epoch - self.warmup_start + 1) / w)) if w > 0 else 1.0
        a = self.cfg.attack
        self.attack = dataclasses.replace(a, eps=a.eps * scale, step_size=a.step_size * scale)

    def on_epoch_start(self, epoch: int, members: Members, optimizers: Optimizers) -> None:
        """Hook called by the trainer after :meth:`set_epoch`, before the epoch's first batch
        (ARREST switches from standard training to finetuning here). Default: nothing."""

    # -- networks and optimizers ------------------------------------------------------------
    def members(self, make_model: Callable[[], nn.Module]) -> Members:
        return {"model": make_model()}

    def sgd(self, params: Any, lr: float | None = None, weight_decay: float | None = None) -> torch.optim.Optimizer:
        return torch.optim.SGD(params, lr=self.cfg.lr if lr is None else lr, momentum=self.cfg.momentum,
                               weight_decay=self.cfg.weight_decay if weight_decay is None else weight_decay)

    def optimizers(self, members: Members) -> Optimizers:
        return {"model": self.sgd(members["model"].parameters())}

    # -- one batch ----------------------------------------------------------------------------
    def loss(self, model: nn.Module, x: Tensor, y: Tensor, generator: torch.Generator) -> tuple[Tensor, dict[str, float]]:
        raise NotImplementedError

    def train_step(self, members: Members, optimizers: Optimizers, x: Tensor, y: Tensor,
                   generator: torch.Generator) -> dict[str, float]:
        model, opt = members["model"], optimizers["model"]
        model.train()
        loss, logs = self.loss(model, x, y, generator)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return {"loss": float(loss.detach()), **logs}


DEFENSES: Registry[type[Recipe]] = Registry("defense")


def register_defense(name: str) -> Callable[[type[Recipe]], type[Recipe]]:
    """``@register_defense("madry")``: the recipe class is registered and knows its name."""
    return DEFENSES.register(name, set_name=True)
