"""``nm.fit``: mini-batch training with metrics, validation, early stopping, regularisation,
gradient clipping, a progress bar, checkpoints that make a killed run resume exactly, and your
own callbacks — a :class:`~nomagic.train.loop.Loop` with the handlers of
:mod:`nomagic.train.handlers`."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

import numpy as np

from ..engines.base import OptState
from ..engines.objective import check_tbptt, check_truncate
from ..errors import InvalidInputError
from ..model.graph import Network
from ..model.losses import get_loss, row_weights
from ..model.params import Params, as_dtype, check_params
from ..model.validation import check_inputs, check_targets
from .handlers import (
    Checkpoint,
    EarlyStopping,
    History,
    PlateauHandler,
    Progress,
    TrainingMetrics,
    Validation,
    fingerprint,
)
from .loop import Callback, Loop, _check_int
from .metrics import resolve_metrics
from .model import Model
from .optimizers import get_optimizer
from .schedules import ReduceLROnPlateau

__all__ = ["EarlyStopping", "fit"]


def _check_nonneg(value, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value) \
            or value < 0:
        raise InvalidInputError(f"{what} must be a number >= 0; got {value!r}")
    return float(value)


def _continued_opt_state(model: Model, opt, P: Params) -> OptState:
    """The model's optimizer state when it suits ``opt`` (same kind of optimizer, same slots),
    in the dtype of ``P``; else a fresh one."""
    state, recorded = model.opt_state, dict(model.info).get("optimizer") or {}
    if state is None or recorded.get("name") != opt.name or set(state.slots) != set(opt.slot_names):
        return opt.init(P)
    return OptState(state.step, {s: Params({k: np.array(v, dtype=P[k].dtype) for k, v in arrays.items()})
                                 for s, arrays in state.slots.items()})


def fit(net: Network | Model, X, Y, *, loss: str | None = None, optimizer=None, epochs: int = 10,
        batch_size: int = 32, seed: int = 0, engine: str = "tensor", dtype: str | None = None,
        params: Mapping[str, np.ndarray] | None = None, validation_data=None,
        validation_split: float = 0.0, early_stopping: int | EarlyStopping | None = None,
        l1: float = 0.0, l2: float = 0.0, clip_norm: float | None = None,
        checkpoint: str | os.PathLike | None = None, shuffle: bool = True,
        verbose: bool | None = None, truncate: int | None = None, tbptt: int | None = None,
        class_weight=None, sample_weight=None, metrics=None, callbacks=None, **engine_options) -> Model:
    """Train ``net`` on (X, Y) and return a ``Model``.

    ``net`` is a ``Network`` (training starts from ``params``, or fresh ones drawn with
    ``seed``), or a ``Model``, which is continued: ``epochs`` more epochs from its params,
    optimizer state and epoch count, with its loss and optimizer unless others are given
    (``loss`` defaults to "mse" and ``optimizer`` to "adam" otherwise). With the same data,
    ``batch_size`` and ``seed``, two epochs then two more give the params of four at once, bit
    for bit; the returned history goes on from the model's.

    Mini-batches are drawn from a permutation seeded by (seed, epoch), so a run is fully
    determined by its arguments, and ``checkpoint=DIR`` can resume a killed run exactly.
    The penalty is ``l1·Σ|w| + l2·Σw²`` over weights (biases are not penalised);
    ``clip_norm`` rescales the gradient when its global L2 norm is larger.

    ``history`` has one dict per epoch: ``loss``, ``accuracy`` (classification losses) or
    ``mae`` (mse), each metric of ``metrics`` (functions ``fn(y_true, y_pred) -> float``,
    named by ``__name__``, or a dict name -> fn), the same with ``val_`` for validation data,
    and ``seconds``. Training metrics are Keras's: the average over the epoch's batches,
    weighted by batch size, each batch judged before its optimizer step.

    ``callbacks`` are ``nm.Callback`` objects: they run after the metrics and validation,
    before the history, early stopping, checkpoint and progress bar, so what they log
    (``loop.log``) is in the history and a stop they ask for (``loop.stop``) is checkpointed.
    An ``nm.ReduceLROnPlateau`` among them becomes an ``nm.PlateauHandler``: after each epoch it
    sets the optimizer's ``lr_scale`` from the monitored value; its state is checkpointed and kept
    in the model. The progress bar (rate, time left) shows on a terminal, or with ``verbose=True``.

    ``truncate=k`` (one forward and backward pass per batch) lets a delta cross a recurrent
    synapse from step t back to t − 1 only when t > T − k: the state entering each step t ≤ T − k
    is detached. With a loss on the last step that is PyTorch's single detach before step T − k;
    with a loss at every step, the outputs before step T − k get no gradient through time at all
    (``nomagic.engines.objective.horizon``).

    ``tbptt=k`` is truncated BPTT the standard way: each mini-batch's sequences are cut
    into chunks of k steps, run in time order, the recurrent state carried from chunk to chunk
    with the gradient cut between them, one optimizer step per chunk (with targets for the last
    step only: the earlier chunks only carry the state, the last chunk takes the loss and the
    step). See ``nm.Loop``. Tensor engine only; not with ``truncate``.

    ``sample_weight`` (one weight >= 0 per training sample, or per sample and step for sequence
    targets; split with ``validation_split``) and ``class_weight`` ({class: weight} or one weight
    per class; classification losses) make the training loss the weighted mean
    ``Σ wᵢ·lᵢ / Σ wᵢ`` over the batch's rows, ``wᵢ = sample_weight[i]·class_weight[yᵢ]``
    (``nomagic.model.losses``; torch's ``CrossEntropyLoss(weight=...)`` for class weights). The
    validation loss and the metrics are not weighted.
    """
    model = None
    if isinstance(net, Model):
        model, net = net, net.net
        if params is not None:
            raise InvalidInputError("give a Model to continue or params to start from, not both")
    if not isinstance(net, Network):
        raise InvalidInputError(f"fit needs a Network (or a Model to continue) as first argument; "
                                f"got {type(net).__name__}")
    loss_fn = get_loss(loss if loss is not None else (model.loss if model is not None else "mse"))
    if optimizer is None:
        optimizer = (dict(model.info).get("optimizer") if model is not None else None) or "adam"
    opt = get_optimizer(optimizer)
    epochs = _check_int(epochs, "epochs")
    batch_size = _check_int(batch_size, "batch_size")
    seed = _check_int(seed, "seed", 0)
    l1, l2 = _check_nonneg(l1, "l1"), _check_nonneg(l2, "l2")
    if clip_norm is not None and (_check_nonneg(clip_norm, "clip_norm") == 0):
        raise InvalidInputError("clip_norm must be positive")
    if isinstance(early_stopping, bool):
        raise InvalidInputError("early_stopping must be a patience (int) or nm.EarlyStopping(...)")
    if isinstance(early_stopping, (int, np.integer)):
        early_stopping = EarlyStopping(patience=_check_int(early_stopping, "early_stopping"))
    if early_stopping is not None and not isinstance(early_stopping, EarlyStopping):
        raise InvalidInputError("early_stopping must be a patience (int) or nm.EarlyStopping(...)")
    callbacks = [PlateauHandler(cb) if isinstance(cb, ReduceLROnPlateau) else cb for cb in (callbacks or [])]
    plateaus = [cb for cb in callbacks if isinstance(cb, PlateauHandler)]
    if len(plateaus) > 1:
        raise InvalidInputError("give one ReduceLROnPlateau: two would fight over the learning rate")
    for cb in callbacks:
        if not isinstance(cb, Callback):
            raise InvalidInputError(f"callbacks must be nm.Callback objects; got {type(cb).__name__}")
        if isinstance(cb, EarlyStopping) and early_stopping is not None:
            raise InvalidInputError("give early stopping once: early_stopping=... or in callbacks, not both")
    resolve_metrics(loss_fn.name, metrics)  # a bad metric fails here, before any training

    # params and dtype
    start_epoch, history, loop_state = 0, [], {}
    if model is not None:
        P = check_params(net, model.params, dtype)
        dt = next(iter(P.values())).dtype if P else as_dtype(dtype or "float32")
        P = Params({k: np.array(v, dtype=dt) for k, v in P.items()})
        opt_state = _continued_opt_state(model, opt, P)
        start_epoch, history = int(model.epoch), list(model.history)
        loop_state = dict(model.loop_state)
        if loop_state.get("best") is not None:
            loop_state["best"] = {k: np.array(v, dtype=dt) for k, v in loop_state["best"].items()}
    elif params is not None:
        P = check_params(net, params, dtype)
        dt = next(iter(P.values())).dtype if P else as_dtype(dtype or "float32")
        P = Params({k: np.array(v, dtype=dt) for k, v in P.items()})
        opt_state = opt.init(P)
    else:
        dt = as_dtype(dtype or "float32")
        P = Params(net.init(seed=seed, dtype=dt))
        opt_state = opt.init(P)

    # data
    X = check_inputs(net, X, dt)
    Y = check_targets(net, loss_fn, Y, X, dt)
    check_truncate(truncate)
    tbptt = check_tbptt(tbptt, net, X.shape, truncate)
    W = row_weights(loss_fn, Y, sample_weight, class_weight)
    if validation_data is not None and validation_split:
        raise InvalidInputError("give validation_data or validation_split, not both")
    Xv = Yv = None
    if validation_data is not None:
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
            raise InvalidInputError("validation_data must be a pair (X_val, Y_val)")
        Xv = check_inputs(net, validation_data[0], dt)
        Yv = check_targets(net, loss_fn, validation_data[1], Xv, dt)
    elif validation_split:
        if isinstance(validation_split, bool) or not isinstance(validation_split, float) or \
                not 0 < validation_split < 1:
            raise InvalidInputError(f"validation_split must lie in (0, 1); got {validation_split!r}")
        n_val = int(round(len(X) * validation_split))
        if n_val < 1 or n_val >= len(X):
            raise InvalidInputError(f"validation_split={validation_split} leaves no data on one side "
                                    f"of {len(X)} samples")
        X, Xv, Y, Yv = X[:-n_val], X[-n_val:], Y[:-n_val], Y[-n_val:]
        if W is not None:
            W = W[:-n_val]
            if not W.sum() > 0:
                raise InvalidInputError("the sample and class weights of the training part are all 0")
    es = None
    if early_stopping is not None:
        monitor = early_stopping.monitor or ("val_loss" if Xv is not None else "loss")
        if monitor not in ("loss", "val_loss") or (monitor == "val_loss" and Xv is None):
            raise InvalidInputError(f"early stopping cannot monitor {monitor!r}: use 'loss', or "
                                    "'val_loss' with validation data")
        es = EarlyStopping(early_stopping.patience, monitor, early_stopping.min_delta,
                           early_stopping.restore_best)
    for ph in plateaus:
        if ph.plateau.monitor == "val_loss" and Xv is None:
            raise InvalidInputError("ReduceLROnPlateau monitors 'val_loss' (its default), and there is no "
                                    "validation data: give validation_data or validation_split, or monitor='loss'")

    # the handlers, in the order they run
    handlers: list[Callback] = [TrainingMetrics(metrics)]
    if Xv is not None:
        handlers.append(Validation(Xv, Yv, metrics))
    handlers += callbacks
    handlers.append(History())
    if es is not None:
        handlers.append(es)
    if checkpoint is not None:
        parts = {"net": net.to_dict(), "loss": loss_fn.name, "optimizer": opt.config(),
                 "batch_size": batch_size, "seed": seed, "dtype": dt.name, "l1": l1, "l2": l2,
                 "clip_norm": clip_norm, "truncate": truncate, "shuffle": shuffle, "engine": engine,
                 "validation_split": validation_split, "early_stopping": repr(early_stopping),
                 "options": repr(sorted(engine_options.items()))}
        if tbptt is not None:  # newer settings enter only when used: older checkpoints still resume
            parts["tbptt"] = tbptt
        if plateaus:
            parts["plateau"] = plateaus[0].plateau.config()
        arrays = [X, Y] + ([Xv, Yv] if Xv is not None else []) + [P[k] for k in sorted(P)]
        if W is not None:
            arrays.append(W)
        if model is not None:  # a continued model: its optimizer state and epoch belong to the run
            parts["start_epoch"] = start_epoch
            parts["opt_step"] = opt_state.step
            arrays += [opt_state.slots[s][k] for s in sorted(opt_state.slots) for k in sorted(P)]
        handlers.append(Checkpoint(checkpoint, fingerprint(parts, arrays)))
    if verbose or (verbose is None and hasattr(sys.stderr, "isatty") and sys.stderr.isatty()):
        handlers.append(Progress())

    loop = Loop._checked(net, X, Y, loss_fn, opt, P, opt_state, engine, batch_size, seed, shuffle, handlers,
                         start_epoch, history,
                         dict(l1=l1, l2=l2, clip_norm=clip_norm, truncate=truncate, **engine_options),
                         tbptt, W)
    if es is not None:
        loop.state.update({k: v for k, v in loop_state.items() if k in ("monitor", "best_value", "wait", "best")})
    if plateaus and loop_state.get("plateau") is not None:
        loop.state["plateau"] = loop_state["plateau"]
    with loop:  # the trainer is closed however the run ends
        loop.run(epochs)  # up to epoch start_epoch + epochs, from where a checkpoint left off
        final = loop.params
        opt_final = loop.opt_state
    state = loop.state
    info = {"optimizer": opt.config(), "epochs_run": state["epoch"], "stopped_early": state["stopped"],
            "engine": engine, "dtype": dt.name}
    if state["stopped"] and state.get("stop_reason"):
        info["stop_reason"] = state["stop_reason"]
    kept = {}
    if es is not None:
        kept = {k: state.get(k) for k in ("monitor", "best_value", "wait")}
        if state.get("best") is not None:
            kept["best"] = Params(state["best"])
    if plateaus and state.get("plateau") is not None:
        kept["plateau"] = state["plateau"]
    return Model(net, final, list(state["history"]), loss_fn.name, info, opt_final, state["epoch"], kept)
