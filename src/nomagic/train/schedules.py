"""Learning-rate schedules, and the reduce-on-plateau rule.

A schedule is a pure function of the optimizer step ``t`` (1-based: the first update is ``t = 1``)
to a learning rate; an optimizer given ``lr=schedule`` uses ``schedule(t)`` in the update of step
``t``. Steps are optimizer steps (mini-batches), not epochs: with ``nm.fit`` an epoch is
``ceil(n_train / batch_size)`` steps, so a decay every ``k`` epochs is ``step_size=k * that``.

The PyTorch twin of each schedule, stepped once per optimizer step (``opt.step(); sched.step()``),
gives the lr of step ``t`` as its lr after ``t - 1`` scheduler steps:

==============================================  ==================================================
``constant(lr)``                                no scheduler
``step_decay(lr, step_size, gamma)``            ``StepLR(step_size=step_size, gamma=gamma)``
``exponential_decay(lr, gamma)``                ``ExponentialLR(gamma=gamma)``
``cosine_decay(lr, total, warmup, min_lr)``     ``LambdaLR`` of the formula below; equally
                                                ``SequentialLR([LinearLR(1/(warmup+1), 1, warmup),
                                                CosineAnnealingLR(total-warmup, min_lr)], [warmup])``
==============================================  ==================================================

A schedule is stored as JSON, its name and arguments: ``s.to_json()``, ``nm.schedule_from_json``.

``ReduceLROnPlateau`` is not a schedule (it depends on the metrics, not on ``t``): it turns a
sequence of monitored values into a scale, which a training loop puts in ``optimizer.lr_scale``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping

import numpy as np

from ..errors import InvalidInputError, UnknownNameError


def _number(value, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not np.isfinite(value):
        raise InvalidInputError(f"{what} must be a finite number; got {value!r}")
    return float(value)


def _positive(value, what: str) -> float:
    if _number(value, what) <= 0:
        raise InvalidInputError(f"{what} must be a positive number; got {value!r}")
    return float(value)


def _nonneg(value, what: str) -> float:
    if _number(value, what) < 0:
        raise InvalidInputError(f"{what} must be a number >= 0; got {value!r}")
    return float(value)


def _integer(value, what: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise InvalidInputError(f"{what} must be an integer >= {minimum}; got {value!r}")
    return int(value)


def _gamma(value) -> float:
    if _number(value, "gamma") <= 0 or value > 1:
        raise InvalidInputError(f"gamma must lie in (0, 1]; got {value!r}")
    return float(value)


class Schedule:
    """A learning rate as a function of the optimizer step ``t`` (1-based)."""

    name = "schedule"

    def __call__(self, t: int) -> float:
        raise NotImplementedError

    def config(self) -> dict:
        """Name and arguments: ``get_schedule(s.config())`` rebuilds ``s``."""
        raise NotImplementedError

    def to_json(self) -> str:
        return json.dumps(self.config())

    @staticmethod
    def from_json(text) -> Schedule:
        """The schedule a ``to_json()`` string (or its parsed dict) describes."""
        return schedule_from_json(text)

    def __eq__(self, other) -> bool:
        return isinstance(other, Schedule) and self.config() == other.config()

    def __hash__(self) -> int:
        return hash(json.dumps(self.config(), sort_keys=True))

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items() if k != "name")
        return f"nm.{self.name}({args})"


class Constant(Schedule):
    """``lr`` at every step."""

    name = "constant"

    def __init__(self, lr: float) -> None:
        self.lr = _positive(lr, "learning rate")

    def __call__(self, t: int) -> float:
        return self.lr

    def config(self) -> dict:
        return {"name": self.name, "lr": self.lr}


class StepDecay(Schedule):
    """``lr · gamma^⌊(t − 1) / step_size⌋``: ``lr`` for the first ``step_size`` steps, then
    multiplied by ``gamma`` every ``step_size`` steps (PyTorch's ``StepLR``)."""

    name = "step_decay"

    def __init__(self, lr: float, step_size: int, gamma: float = 0.1) -> None:
        self.lr = _positive(lr, "learning rate")
        self.step_size = _integer(step_size, "step_size", 1)
        self.gamma = _gamma(gamma)

    def __call__(self, t: int) -> float:
        return self.lr * self.gamma ** ((int(t) - 1) // self.step_size)

    def config(self) -> dict:
        return {"name": self.name, "lr": self.lr, "step_size": self.step_size, "gamma": self.gamma}


class ExponentialDecay(Schedule):
    """``lr · gamma^(t − 1)`` (PyTorch's ``ExponentialLR``)."""

    name = "exponential_decay"

    def __init__(self, lr: float, gamma: float) -> None:
        self.lr = _positive(lr, "learning rate")
        self.gamma = _gamma(gamma)

    def __call__(self, t: int) -> float:
        return self.lr * self.gamma ** (int(t) - 1)

    def config(self) -> dict:
        return {"name": self.name, "lr": self.lr, "gamma": self.gamma}


class CosineDecay(Schedule):
    """Linear warm-up, then a half cosine from ``lr`` down to ``min_lr``.

    With ``W = warmup_steps``, ``T = total_steps`` and ``s = t − 1`` (steps already taken)::

        s <  W:  lr · (s + 1) / (W + 1)                                   lr/(W+1), 2·lr/(W+1), …
        s >= W:  min_lr + (lr − min_lr) · (1 + cos(π · min(s − W, T − W) / (T − W))) / 2

    so step ``W + 1`` is the first at ``lr``, and ``min_lr`` is reached after ``T`` steps (at
    ``t = T + 1``) and kept from then on. Without warm-up this is PyTorch's
    ``CosineAnnealingLR(T_max=T, eta_min=min_lr)`` for its first ``T`` steps (PyTorch's cosine
    then rises again; this one stays at ``min_lr``).
    """

    name = "cosine_decay"

    def __init__(self, lr: float, total_steps: int, warmup_steps: int = 0, min_lr: float = 0.0) -> None:
        self.lr = _positive(lr, "learning rate")
        self.total_steps = _integer(total_steps, "total_steps", 1)
        self.warmup_steps = _integer(warmup_steps, "warmup_steps", 0)
        if self.warmup_steps >= self.total_steps:
            raise InvalidInputError(f"warmup_steps ({warmup_steps}) must be less than total_steps ({total_steps})")
        self.min_lr = _nonneg(min_lr, "min_lr")
        if self.min_lr > self.lr:
            raise InvalidInputError(f"min_lr ({min_lr}) must not exceed the learning rate ({lr})")

    def __call__(self, t: int) -> float:
        s, w = int(t) - 1, self.warmup_steps
        if s < w:
            return self.lr * (s + 1) / (w + 1)
        span = self.total_steps - w
        e = min(s - w, span)
        return self.min_lr + (self.lr - self.min_lr) * (1.0 + math.cos(math.pi * e / span)) / 2.0

    def config(self) -> dict:
        return {"name": self.name, "lr": self.lr, "total_steps": self.total_steps,
                "warmup_steps": self.warmup_steps, "min_lr": self.min_lr}


SCHEDULES: dict[str, type[Schedule]] = {
    c.name: c for c in (Constant, StepDecay, ExponentialDecay, CosineDecay)
}


def constant(lr: float) -> Constant:
    """The learning rate ``lr`` at every step."""
    return Constant(lr)


def step_decay(lr: float, step_size: int, gamma: float = 0.1) -> StepDecay:
    """``lr`` times ``gamma`` every ``step_size`` optimizer steps (PyTorch's ``StepLR``)."""
    return StepDecay(lr, step_size, gamma)


def exponential_decay(lr: float, gamma: float) -> ExponentialDecay:
    """``lr`` times ``gamma`` every optimizer step (PyTorch's ``ExponentialLR``)."""
    return ExponentialDecay(lr, gamma)


def cosine_decay(lr: float, total_steps: int, warmup_steps: int = 0, min_lr: float = 0.0) -> CosineDecay:
    """Linear warm-up over ``warmup_steps``, then a half cosine to ``min_lr`` at ``total_steps``."""
    return CosineDecay(lr, total_steps, warmup_steps, min_lr)


def get_schedule(spec) -> Schedule:
    """A schedule from a schedule, a learning rate (a constant), a config dict or a JSON string."""
    if isinstance(spec, Schedule):
        return spec
    if isinstance(spec, str):
        try:
            spec = json.loads(spec)
        except json.JSONDecodeError:
            raise InvalidInputError(f"not a schedule's JSON: {spec!r}") from None
    if isinstance(spec, Mapping):
        args = dict(spec)
        name = args.pop("name", None)
        if name not in SCHEDULES:
            raise UnknownNameError(f"unknown schedule {name!r}; choose one of: {', '.join(SCHEDULES)}")
        try:
            return SCHEDULES[name](**args)
        except TypeError as exc:
            raise InvalidInputError(f"bad arguments for schedule {name!r}: {exc}") from None
    if isinstance(spec, bool) or not isinstance(spec, (int, float, np.integer, np.floating)):
        raise InvalidInputError(f"a learning rate must be a positive number or a schedule "
                                f"(nm.cosine_decay(...), say); got {spec!r}")
    return Constant(spec)


def schedule_from_json(text) -> Schedule:
    """The schedule a ``Schedule.to_json()`` string (or its parsed dict) describes."""
    if not isinstance(text, (str, Mapping)):
        raise InvalidInputError(f"expected a schedule's JSON string or dict; got {type(text).__name__}")
    return get_schedule(text)


# --- reduce on plateau ----------------------------------------------------------------------------


class ReduceLROnPlateau:
    """Cut the learning rate by ``factor`` when ``monitor`` stops improving: PyTorch's
    ``ReduceLROnPlateau`` rules, as a scale that multiplies the optimizer's learning rate.

    Call ``update(value)`` once per epoch with the monitored value; it returns the new scale
    (1.0 at first), which the training loop sets as ``optimizer.lr_scale``. The rules, exactly
    PyTorch's: ``value`` is better than ``best`` when ``value < best·(1 − threshold)`` (mode
    "min", threshold_mode "rel"; "abs": ``value < best − threshold``; mode "max" mirrors them);
    a value that is not better is a bad epoch; during a cooldown bad epochs are not counted;
    more than ``patience`` bad epochs in a row cut the learning rate to
    ``max(lr·factor, min_lr)`` — unless that changes it by ``eps`` or less — then start a
    cooldown of ``cooldown`` epochs.

    ``min_lr`` and ``eps`` are learning rates: ``update(value, lr=...)`` takes the unscaled
    learning rate of the current step (``optimizer.schedule(t)``; for a plain float ``lr`` that
    float). Without ``lr`` they apply to the scale itself (as for a learning rate of 1).

    The state (``state()``, ``load_state``) is plain JSON, for checkpoints.
    """

    def __init__(self, monitor: str = "val_loss", factor: float = 0.1, patience: int = 10,
                 min_lr: float = 0.0, threshold: float = 1e-4, mode: str = "min", cooldown: int = 0,
                 threshold_mode: str = "rel", eps: float = 1e-8) -> None:
        if not isinstance(monitor, str) or not monitor:
            raise InvalidInputError(f"monitor must be a metric name ('val_loss', say); got {monitor!r}")
        self.monitor = monitor
        self.factor = _number(factor, "factor")
        if not 0 < self.factor < 1:
            raise InvalidInputError(f"factor must lie in (0, 1); got {factor!r}")
        self.patience = _integer(patience, "patience", 0)
        self.min_lr = _nonneg(min_lr, "min_lr")
        self.threshold = _nonneg(threshold, "threshold")
        if mode not in ("min", "max"):
            raise InvalidInputError(f"mode must be 'min' or 'max'; got {mode!r}")
        if threshold_mode not in ("rel", "abs"):
            raise InvalidInputError(f"threshold_mode must be 'rel' or 'abs'; got {threshold_mode!r}")
        self.mode, self.threshold_mode = mode, threshold_mode
        self.cooldown = _integer(cooldown, "cooldown", 0)
        self.eps = _nonneg(eps, "eps")
        self.reset()

    def reset(self) -> None:
        """Back to the start: scale 1, no best value, no bad epochs, no cooldown."""
        self.scale = 1.0
        self.best = math.inf if self.mode == "min" else -math.inf
        self.num_bad_epochs = 0
        self.cooldown_counter = 0
        self.last_epoch = 0

    def is_better(self, value: float, best: float) -> bool:
        if self.mode == "min":
            return value < (best * (1.0 - self.threshold) if self.threshold_mode == "rel" else best - self.threshold)
        return value > (best * (self.threshold + 1.0) if self.threshold_mode == "rel" else best + self.threshold)

    @property
    def in_cooldown(self) -> bool:
        return self.cooldown_counter > 0

    def update(self, value, lr: float | None = None) -> float:
        """Take one epoch's monitored ``value``; return the new scale of the learning rate."""
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise InvalidInputError(f"{self.monitor} must be a number; got {value!r}")
        base = 1.0 if lr is None else _positive(lr, "lr")
        current = float(value)
        self.last_epoch += 1
        if self.is_better(current, self.best):
            self.best = current
            self.num_bad_epochs = 0
        else:
            self.num_bad_epochs += 1
        if self.in_cooldown:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0  # bad epochs in a cooldown do not count
        if self.num_bad_epochs > self.patience:
            old = base * self.scale
            new = max(old * self.factor, self.min_lr)
            if old - new > self.eps:
                self.scale = new / base
            self.cooldown_counter = self.cooldown
            self.num_bad_epochs = 0
        return self.scale

    def config(self) -> dict:
        return {"monitor": self.monitor, "factor": self.factor, "patience": self.patience,
                "min_lr": self.min_lr, "threshold": self.threshold, "mode": self.mode,
                "cooldown": self.cooldown, "threshold_mode": self.threshold_mode, "eps": self.eps}

    def state(self) -> dict:
        """What changes from epoch to epoch, as JSON-ready values (no best yet: ``None``)."""
        return {"scale": self.scale, "best": self.best if math.isfinite(self.best) else None,
                "num_bad_epochs": self.num_bad_epochs, "cooldown_counter": self.cooldown_counter,
                "last_epoch": self.last_epoch}

    def load_state(self, state: Mapping) -> None:
        """Restore a ``state()`` (from a checkpoint)."""
        try:
            scale = _positive(state["scale"], "scale")
            best = state["best"]
            best = (math.inf if self.mode == "min" else -math.inf) if best is None else _number(best, "best")
            counts = [_integer(state[k], k, 0) for k in ("num_bad_epochs", "cooldown_counter", "last_epoch")]
        except (KeyError, TypeError) as exc:
            raise InvalidInputError(f"not a ReduceLROnPlateau state: {exc!r}") from None
        self.scale, self.best = scale, best
        self.num_bad_epochs, self.cooldown_counter, self.last_epoch = counts

    def to_json(self) -> str:
        """Settings and state, as JSON."""
        return json.dumps({"config": self.config(), "state": self.state()})

    @classmethod
    def from_json(cls, text) -> ReduceLROnPlateau:
        try:
            data = json.loads(text) if isinstance(text, str) else text
            out = cls(**data["config"])
            state = data["state"]
        except (KeyError, TypeError, json.JSONDecodeError) as exc:
            raise InvalidInputError(f"not a ReduceLROnPlateau's JSON: {exc!r}") from None
        out.load_state(state)
        return out

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        return f"nm.ReduceLROnPlateau({args})"
