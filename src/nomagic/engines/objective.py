"""What every engine must agree on, so that the same network, params and data give the same
numbers everywhere: the penalty and its gradient, the clip scale, when the loss is taken from
the logits, and how far back a truncated gradient travels. Each rule is written here once.
"""

from __future__ import annotations

import numpy as np

from ..errors import InvalidInputError
from ..model.dropout import check_key
from ..model.losses import get_loss
from ..model.params import check_params
from ..model.validation import check_inputs, check_targets


def penalty(w: np.ndarray, l1: float, l2: float) -> float:
    """``l1·Σ|w| + l2·Σw²`` over the weights ``w`` (biases are never penalised)."""
    value = 0.0
    if l1:
        value += l1 * float(np.abs(w).sum())
    if l2:
        value += l2 * float(w @ w)
    return value


def add_penalty_grad(g: np.ndarray, w: np.ndarray, l1: float, l2: float) -> None:
    """``g += l1·sign(w) + 2·l2·w`` in place: the gradient of :func:`penalty`."""
    if l1:
        g += l1 * np.sign(w)
    if l2:
        g += (2.0 * l2) * w


def clip_scale(sum_of_squares: float, clip_norm: float | None) -> float:
    """The factor that brings a gradient of global norm ``sqrt(sum_of_squares)`` down to at most
    ``clip_norm`` (1.0 when it is already within, or when there is no clipping)."""
    if clip_norm is None:
        return 1.0
    norm = float(np.sqrt(sum_of_squares))
    return clip_norm / norm if norm > clip_norm else 1.0


def weight_mask(net, layout, flat: np.ndarray, l1: float, l2: float) -> np.ndarray | None:
    """For ``regularise``: 1 where the flat vector (``layout``, like ``flat``) holds a weight (a
    masked block's weights: its mask), 0 on biases; None without a penalty."""
    if not (l1 or l2):
        return None
    mask = np.zeros_like(flat)
    for spec in net.param_specs():
        if spec.role == "weight":
            a, b = layout.offsets[spec.key]
            mask[a:b] = 1.0 if spec.mask is None else spec.mask.ravel()
    return mask


def regularise(value: float, g: np.ndarray, w: np.ndarray, weight_mask: np.ndarray | None, l1: float, l2: float,
               clip_norm: float | None) -> float:
    """For engines that keep the whole flat gradient ``g`` of params ``w``: add the penalty on the
    weights (``weight_mask`` 1 on weights, 0 on biases; None without a penalty) to ``value`` and
    its gradient to ``g``, then clip ``g`` in place. Returns the objective."""
    if weight_mask is not None:
        masked = w * weight_mask
        value += penalty(masked, l1, l2)
        add_penalty_grad(g, masked, l1, l2)
    if clip_norm is not None:
        scale = clip_scale(float(g @ g), clip_norm)
        if scale != 1.0:
            g *= scale
    return value


def uses_logits(loss, output_activation: str | None) -> bool:
    """True when the loss is computed from the output's pre-activation ``z`` in one fused,
    numerically stable formula (softmax + cross-entropy, sigmoid + binary cross-entropy)."""
    return output_activation is not None and loss.partner == output_activation and loss.from_logits is not None


def checked_gradient_args(net, params, X, Y, loss, truncate, dropout_key) -> tuple:
    """The checks of a ``loss_and_grad`` call, in the order every engine makes them: returns
    (dropout key, loss object, params, inputs, targets), inputs and targets in the params' dtype."""
    key = check_key(dropout_key)
    loss_fn = get_loss(loss)
    P = check_params(net, params)
    dt = next(iter(P.values())).dtype
    X = check_inputs(net, X, dt)
    Y = check_targets(net, loss_fn, Y, X, dt)
    check_truncate(truncate)
    return key, loss_fn, P, X, Y


def check_truncate(truncate) -> None:
    """``truncate`` is None (full backpropagation through time) or a positive number of steps."""
    if truncate is not None and (isinstance(truncate, bool) or not isinstance(truncate, int) or truncate < 1):
        raise InvalidInputError(f"truncate must be a positive number of time steps; got {truncate!r}")


def horizon(T: int, truncate: int | None) -> int:
    """The first step a recurrent delta may reach, for sequences of ``T`` steps (0-based steps;
    0 when there is no truncation): ``first = max(T − truncate, 0)``.

    The rule every engine applies: a delta crosses a recurrent synapse from step t back to step
    t − 1 only when ``t > first``. So the state entering each step ``t ≤ first`` is treated as a
    constant (detached), and only the last ``truncate`` steps pass gradients through time. A loss
    on the last step alone then gets exactly PyTorch's "detach the hidden state once, before step
    T − truncate". A loss at every step is different from that: the output at a step ``t < first``
    gets the gradient of step t's own weights (its state taken as a constant), none from earlier
    steps; the outputs at steps ``first … T − 1`` backpropagate through time down to step
    ``first``. Layers stacked on each other each apply the rule to their own state (an LSTM to h
    and c), while deltas between layers at the same step are never cut."""
    return 0 if truncate is None else max(T - truncate, 0)


def check_tbptt(tbptt, net, X_shape: tuple, truncate) -> int | None:
    """``tbptt`` is None, or a number of steps ``1 ≤ k ≤ T`` for a recurrent network, without
    ``truncate``; returns it as an int."""
    if tbptt is None:
        return None
    if isinstance(tbptt, bool) or not isinstance(tbptt, (int, np.integer)) or tbptt < 1:
        raise InvalidInputError(f"tbptt must be a positive number of time steps; got {tbptt!r}")
    if not net.is_recurrent:
        raise InvalidInputError("tbptt cuts sequences for truncated backpropagation through time; this "
                                "network has no recurrent layer")
    if truncate is not None:
        raise InvalidInputError("give truncate or tbptt, not both: tbptt=k already limits the gradient to "
                                "chunks of k steps")
    T = X_shape[1]
    if tbptt > T:
        raise InvalidInputError(f"tbptt={tbptt} is longer than the sequences ({T} steps)")
    return int(tbptt)
