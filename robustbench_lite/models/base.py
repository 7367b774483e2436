"""The one feature interface every registered model provides.

A :class:`BenchModel` splits its forward pass in three parts::

    fmap   = model.forward_features(x)   # (N, C, H, W): the last feature map BEFORE global pooling
    z      = model.pool(fmap)             # (N, D): the penultimate vector the final linear layer reads
    logits = model.head(z)                # (N, num_classes)

``model.features(x)`` returns all three at once as :class:`Features`. ARREST's representation
distillation reads ``pre_pool`` (flattened); AFD's feature extractor and the model analyses read
``pooled``. For a CNN without global pooling (``small_cnn``) ``pool`` is its fully connected trunk
up to the last linear layer, so ``pooled`` is still "the penultimate features".
"""
from __future__ import annotations

from typing import Any, NamedTuple

from torch import Tensor, nn


class Features(NamedTuple):
    pre_pool: Tensor
    pooled: Tensor
    logits: Tensor


class BenchModel(nn.Module):
    """Base class: subclasses implement ``forward_features``, ``pool`` and ``head``."""

    num_classes: int

    def forward_features(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def pool(self, fmap: Tensor) -> Tensor:
        return nn.functional.adaptive_avg_pool2d(fmap, 1).flatten(1)

    def head(self, z: Tensor) -> Tensor:
        raise NotImplementedError

    def features(self, x: Tensor) -> Features:
        fmap = self.forward_features(x)
        z = self.pool(fmap)
        return Features(fmap, z, self.head(z))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.pool(self.forward_features(x)))


class ExternalModel(BenchModel):
    """Wraps a user's ``nn.Module`` given by ``--arch module:callable``; it exposes logits only.

    Its ``state_dict`` is the user's own: the keys carry no prefix of the wrapper, so a user's
    weights load as they were saved whatever the user's attribute names are (``net``, ``model``,
    ``module``, ...), and ``state_dict()`` / ``load_state_dict()`` round-trip (also nested inside
    another module). The wrapped module is ``self.net`` in Python only."""

    def __init__(self, net: nn.Module, num_classes: int) -> None:
        super().__init__()
        self.net = net
        self.num_classes = num_classes
        hide_inner_prefix(self)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    def features(self, x: Tensor) -> Features:
        from ..errors import BenchError

        raise BenchError("this model came from --arch module:callable and exposes no features; register it as a BenchModel.")


_INNER = "net."  # a wrapper's attribute for the wrapped module, hidden from its state_dict


def hide_inner_prefix(wrapper: nn.Module) -> None:
    """Make ``wrapper``'s state_dict the one of its ``wrapper.net``: keys carry no ``net.`` prefix on save,
    get it back on load, and missing/unexpected keys are reported without it. Used by
    :class:`ExternalModel` and by the normalising and library wrappers (``models/normalize.py``,
    ``models/hub.py``); the wrapper's own buffers must be non-persistent."""
    wrapper._register_state_dict_hook(_drop_wrapper_prefix)
    wrapper._register_load_state_dict_pre_hook(_add_wrapper_prefix, with_module=True)
    wrapper.register_load_state_dict_post_hook(_drop_wrapper_prefix_from_report)


def _drop_wrapper_prefix(module: nn.Module, state_dict: dict[str, Any], prefix: str, local_metadata: dict[str, Any]) -> None:
    """state_dict post-hook: ``<prefix>net.<key>`` -> ``<prefix><key>`` (and the same for the version metadata)."""
    inner = prefix + _INNER
    items = [(k, state_dict.pop(k)) for k in [k for k in state_dict if k.startswith(inner)]]
    for k, v in items:  # pop all first: a user key "net.w" must not overwrite the user's "w" mid-way
        state_dict[prefix + k[len(inner):]] = v
    meta = getattr(state_dict, "_metadata", None)
    if meta is not None:
        moved = [(k, meta.pop(k)) for k in [k for k in meta if k == inner[:-1] or k.startswith(inner)]]
        for k, v in moved:
            if k != inner[:-1]:  # the user's root module's entry: the wrapper's own stands for it
                meta[prefix + k[len(inner):]] = v


def _add_wrapper_prefix(module: nn.Module, state_dict: dict[str, Any], prefix: str, local_metadata: dict[str, Any],
                        strict: bool, missing_keys: list[str], unexpected_keys: list[str], error_msgs: list[str]) -> None:
    """load_state_dict pre-hook: the user's ``<prefix><key>`` -> ``<prefix>net.<key>`` before the children load."""
    module._load_prefix = prefix  # type: ignore[assignment]  # for the post-hook, which is not told it
    items = [(k, state_dict.pop(k)) for k in [k for k in state_dict if k.startswith(prefix)]]
    for k, v in items:
        state_dict[prefix + _INNER + k[len(prefix):]] = v


def _drop_wrapper_prefix_from_report(module: nn.Module, incompatible: Any) -> None:
    """load_state_dict post-hook: missing/unexpected keys are reported as the user's keys."""
    inner = getattr(module, "_load_prefix", "") + _INNER
    for keys in (incompatible.missing_keys, incompatible.unexpected_keys):
        keys[:] = [inner[:-len(_INNER)] + k[len(inner):] if k.startswith(inner) else k for k in keys]
