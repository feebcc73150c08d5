"""Training as a loop of handlers.

A :class:`Loop` runs mini-batch training and emits five events — ``fit_start``,
``epoch_start``, ``batch_end``, ``epoch_end``, ``fit_end`` — to its handlers, in the order they
are listed. Everything ``nm.fit`` does beyond the optimizer step is a handler of
``nomagic.train.handlers``: the training metrics, validation, the history, early stopping,
checkpoints and the progress bar. Your own handlers subclass :class:`Callback`.
"""

from __future__ import annotations

import inspect
import math
import time
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from ..engines import get_engine
from ..engines.base import OptState
from ..engines.objective import check_tbptt, check_truncate
from ..errors import CallbackError, InvalidInputError, NomagicError
from ..model.dropout import has_dropout
from ..model.graph import Network
from ..model.losses import get_loss, row_weights
from ..model.params import Params, as_dtype, check_params
from ..model.validation import check_inputs, check_targets
from .optimizers import get_optimizer

EVENTS = ("on_fit_start", "on_epoch_start", "on_batch_end", "on_epoch_end", "on_fit_end")


class Callback:
    """Base class of the handlers of a training loop (Keras's ``Callback``, Axon's handlers).

    Override any of the five methods; each gets the running :class:`Loop`:

    - ``on_fit_start(loop)``: once, before the first epoch of a run (the trainer is not built
      yet: ``loop.params`` and ``loop.opt_state`` may still be replaced);
    - ``on_epoch_start(loop)``: ``loop.epoch`` is the number of epochs done before this one;
    - ``on_batch_end(loop)``: after each optimizer step; ``loop.batch``, ``loop.batch_loss``,
      ``loop.xb``, ``loop.yb`` describe the batch (and ``loop.outputs`` its outputs before the
      step, when the handler sets ``needs_outputs = True``: handed back by the engine, or on an
      engine that cannot, computed by the tensor engine from the params before the step). Only
      handlers that override this method are called per batch, so the others cost nothing there;
    - ``on_epoch_end(loop)``: ``loop.record`` is the epoch's history entry (``epoch``,
      ``loss``, the metrics); add to it with ``loop.log(name, value)``;
    - ``on_fit_end(loop)``: once, after the last epoch (also after a stop).

    A handler stops training with ``loop.stop("reason")``: the current epoch still ends (from
    ``on_batch_end``, after that batch), then ``fit_end`` follows. An exception raised in a
    handler ends training with a :class:`~nomagic.CallbackError` naming the handler and the
    method; what was done before (a checkpoint, say) stays.
    """

    #: True (or "logits": scores that rank like the outputs are enough) to get ``loop.outputs``
    needs_outputs: bool | str = False

    def on_fit_start(self, loop: Loop) -> None:
        """Before the first epoch."""

    def on_epoch_start(self, loop: Loop) -> None:
        """Before an epoch's first batch."""

    def on_batch_end(self, loop: Loop) -> None:
        """After each batch's optimizer step."""

    def on_epoch_end(self, loop: Loop) -> None:
        """After an epoch's last batch."""

    def on_fit_end(self, loop: Loop) -> None:
        """After the last epoch."""


def _overrides(handler, event: str):
    """The bound method for ``event`` when the handler defines one of its own, else None."""
    fn = getattr(handler, event, None)
    if fn is None or not callable(fn):
        return None
    if getattr(type(handler), event, None) is getattr(Callback, event):
        return None
    return fn


def _check_int(value, what: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise InvalidInputError(f"{what} must be an integer >= {minimum}; got {value!r}")
    return int(value)


class Loop:
    """Mini-batch training of ``net`` on (X, Y), as a loop that emits events to handlers.

    ``nm.fit`` builds one of these; build your own to choose every handler yourself::

        class PrintLoss(nm.Callback):
            def on_epoch_end(self, loop):
                print(loop.epoch, loop.record["loss"])

        with nm.Loop(net, X, Y, loss="mse", optimizer=nm.sgd(0.1), batch_size=16,
                     handlers=[nm.TrainingMetrics(), nm.History(), PrintLoss()]) as loop:
            loop.run(epochs=5)      # five epochs; run(epochs=3) again trains three more
            params = loop.params    # the trained params
            history = loop.history  # one dict per epoch (filled by nm.History)

    The arguments mean what they mean for ``nm.fit``. Mini-batches are drawn from a
    permutation seeded by (seed, epoch), where ``epoch`` counts from the start of training
    (``epoch=`` and ``opt_state=`` continue an earlier run exactly). A network with dropout
    layers is trained with the dropout key (seed, epoch, batch index in the epoch) of each
    batch, so its masks too are the same however a run is cut. The trainer is built when
    the first run starts, after the ``fit_start`` handlers, and released by ``close()`` (or at
    the end of the ``with`` block).

    What handlers see: ``net``, ``X``, ``Y`` (checked: one-hot targets for cross-entropy),
    ``loss`` (the loss object), ``optimizer``, ``dtype``, ``batch_size``, ``n_batches``,
    ``epoch`` (epochs done), ``end_epoch`` (where this run stops), ``record``, ``history``,
    ``state`` (what a checkpoint saves: epoch, history and handlers' entries), ``trainer``,
    ``params``, ``opt_state``; per batch ``batch``, ``seen`` (samples so far this epoch),
    ``loss_sum`` (Σ batch loss × batch size), ``batch_loss``, ``xb``, ``yb``, ``outputs``; per
    epoch ``X_epoch``, ``Y_epoch`` (the shuffled data) and ``order`` (the permutation, or
    None); ``tbptt`` and ``weights`` (one weight per row of ``Y``, or None).
    ``stop(reason)`` and ``log(name, value)`` are the two ways a handler acts on the loop.

    **Truncated BPTT by chunks** (``tbptt=k``): each mini-batch's sequences are cut into chunks
    of steps ``[0, k), [k, 2k), …`` (the last one shorter when k does not divide T). The chunks
    run in time order; each starts from the recurrent state the chunk before ended with (its
    forward pass, before its step; zeros for the first chunk), the gradient cut between them.
    With targets at every step (``return_sequences=True``), each chunk is a batch of its own:
    the loss of the chunk's steps (their mean), its gradient within the chunk, one optimizer step.
    With targets for the last step only, the chunks before the last only run forward to carry the
    state (no loss, no step), and the last chunk takes the loss and the one step, its gradient
    reaching back to that chunk's first step. The batch's loss in the history is the mean of its
    chunks' objectives weighted by their lengths (the last chunk's, for last-step targets). With
    dropout layers, every chunk of a batch (the forward-only ones too) gets the batch's dropout
    key (seed, epoch, batch): a sequence keeps one mask for all its steps, as without ``tbptt``.
    """

    def __init__(self, net: Network, X, Y, *, loss: str = "mse", optimizer="adam",
                 params: Mapping[str, np.ndarray] | None = None, opt_state: OptState | None = None,
                 engine: str = "tensor", dtype: str | None = None, batch_size: int = 32,
                 seed: int = 0, shuffle: bool = True, handlers: Iterable = (), l1: float = 0.0,
                 l2: float = 0.0, clip_norm: float | None = None, truncate: int | None = None,
                 tbptt: int | None = None, sample_weight=None, class_weight=None,
                 epoch: int = 0, history: list | None = None, **engine_options) -> None:
        if not isinstance(net, Network):
            raise InvalidInputError(f"Loop needs a Network as first argument; got {type(net).__name__}")
        loss_fn, opt = get_loss(loss), get_optimizer(optimizer)
        seed = _check_int(seed, "seed", 0)
        if params is not None:
            P = check_params(net, params, dtype)
            dt = next(iter(P.values())).dtype if P else as_dtype(dtype or "float32")
            P = Params({k: np.array(v, dtype=dt) for k, v in P.items()})
        else:
            dt = as_dtype(dtype or "float32")
            P = Params(net.init(seed=seed, dtype=dt))
        X = check_inputs(net, X, dt)
        Y = check_targets(net, loss_fn, Y, X, dt)
        check_truncate(truncate)
        tbptt = check_tbptt(tbptt, net, X.shape, truncate)
        self._setup(net, X, Y, loss_fn, opt, P, opt_state if opt_state is not None else opt.init(P), engine,
                    _check_int(batch_size, "batch_size"), seed, shuffle, handlers,
                    _check_int(epoch, "epoch", 0), history,
                    dict(l1=l1, l2=l2, clip_norm=clip_norm, truncate=truncate, **engine_options),
                    tbptt, row_weights(loss_fn, Y, sample_weight, class_weight))

    @classmethod
    def _checked(cls, net, X, Y, loss, optimizer, params, opt_state, engine, batch_size, seed, shuffle,
                 handlers, epoch, history, trainer_args, tbptt=None, weights=None) -> Loop:
        """A loop from arguments ``nm.fit`` has checked already (the data, params, loss objects,
        ``tbptt`` and the row weights)."""
        self = cls.__new__(cls)
        self._setup(net, X, Y, loss, optimizer, params, opt_state, engine, batch_size, seed, shuffle,
                    handlers, epoch, history, trainer_args, tbptt, weights)
        return self

    def _setup(self, net, X, Y, loss, optimizer, params, opt_state, engine, batch_size, seed, shuffle,
               handlers, epoch, history, trainer_args, tbptt=None, weights=None) -> None:
        self.net, self.loss, self.optimizer = net, loss, optimizer
        self.engine_name = engine
        self._engine = get_engine(engine)
        self.tbptt, self.weights = tbptt, weights
        trainer_cls = self._engine.Trainer
        if tbptt is not None and not (hasattr(trainer_cls, "last_state") and hasattr(trainer_cls, "advance")):
            raise InvalidInputError(f"tbptt is not supported on the {engine} engine; use engine='tensor'")
        if weights is not None and "sample_weight" not in inspect.signature(trainer_cls.train_batch).parameters:
            raise InvalidInputError(f"sample_weight and class_weight are not supported on the {engine} engine; "
                                    "use engine='tensor' or 'processes'")
        self.handlers = [_as_handler(h) for h in handlers]
        self.seed, self.shuffle = seed, bool(shuffle)
        self.dtype = next(iter(params.values())).dtype if params else np.dtype(np.float32)
        self.X, self.Y = X, Y
        self.n = len(X)
        self.batch_size = min(batch_size, self.n)
        self.n_batches = -(-self.n // self.batch_size)
        self._params = params
        self._opt_state = opt_state
        self._trainer_args = trainer_args
        self.trainer = None
        self.state: dict[str, Any] = {"epoch": epoch,
                                      "history": list(history or []), "stopped": False,
                                      "stop_reason": None}
        for h in self.handlers:
            if not any(_overrides(h, e) for e in EVENTS):
                raise InvalidInputError(f"handler {h!r} has none of the methods {', '.join(EVENTS)}; "
                                        "subclass nm.Callback and override one")
        self._calls = {e: [fn for fn in (_overrides(h, e) for h in self.handlers) if fn is not None]
                       for e in EVENTS}
        self._needs_outputs = self._logits_ok = False
        self._dropout = has_dropout(net)
        self._reference_predict = None
        self.end_epoch = self.state["epoch"]
        self.record: dict[str, Any] = {}
        self.batch = 0
        self.seen = 0
        self.loss_sum = 0.0
        self.batch_loss = float("nan")
        self.xb = self.yb = self.outputs = None
        self.X_epoch, self.Y_epoch, self.order = self.X, self.Y, None
        self.epoch_started = 0.0

    # -- what handlers read and do ------------------------------------------------------------

    @property
    def epoch(self) -> int:
        """Epochs done (during an epoch: the 0-based index of the current one)."""
        return self.state["epoch"]

    @property
    def history(self) -> list:
        return self.state["history"]

    @property
    def stopped(self) -> bool:
        return self.state["stopped"]

    @property
    def stop_reason(self) -> str | None:
        return self.state["stop_reason"]

    @property
    def params(self) -> Params:
        """The current params (asked of the trainer once it is built)."""
        return self.trainer.params() if self.trainer is not None else self._params

    @params.setter
    def params(self, value) -> None:
        P = check_params(self.net, value, self.dtype.name)
        if self.trainer is not None:
            self.trainer.set_params(P)
        else:
            self._params = Params(P)

    @property
    def opt_state(self) -> OptState:
        return self.trainer.opt_state() if self.trainer is not None else self._opt_state

    @opt_state.setter
    def opt_state(self, value: OptState) -> None:
        if self.trainer is not None:
            raise NomagicError("the optimizer state can only be replaced before the first run starts "
                               "(in on_fit_start)")
        self._opt_state = value

    def stop(self, reason: str = "stopped by a callback") -> None:
        """End training: after this batch (from ``on_batch_end``) or after this epoch."""
        self.state["stopped"] = True
        self.state["stop_reason"] = str(reason)

    def log(self, name: str, value) -> None:
        """Add ``name: value`` (a number) to the current epoch's history entry."""
        if not isinstance(name, str) or not name or name == "epoch":
            raise InvalidInputError(f"loop.log needs a metric name (a non-empty str other than 'epoch'); "
                                    f"got {name!r}")
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
                and not (isinstance(value, np.ndarray) and value.shape == () and value.dtype.kind in "iuf"):
            raise InvalidInputError(f"loop.log({name!r}, ...) needs a number; got {type(value).__name__}")
        self.record[name] = float(value)

    # -- running --------------------------------------------------------------------------------

    def _dispatch(self, event: str) -> None:
        fn = None
        try:
            for fn in self._calls[event]:
                fn(self)
        except NomagicError:
            raise
        except Exception as exc:
            raise _callback_error(fn, event, exc) from exc

    def run(self, epochs: int = 1) -> Loop:
        """Train ``epochs`` more epochs (fewer if a handler stops it); returns the loop."""
        epochs = _check_int(epochs, "epochs")
        self.end_epoch = self.state["epoch"] + epochs
        self.state["stopped"], self.state["stop_reason"] = False, None
        self._dispatch("on_fit_start")
        needs = [getattr(fn.__self__, "needs_outputs", False) for fn in self._calls["on_batch_end"]]
        self._needs_outputs = any(needs)
        if self._needs_outputs and self._reference_predict is None:
            self._reference_predict = get_engine("tensor").predict
        self._logits_ok = self._needs_outputs and all(x == "logits" for x in needs if x)
        if self.trainer is None:
            self.trainer = self._engine.Trainer(self.net, self._params, self.optimizer, self._opt_state,
                                                self.loss, **self._trainer_args)
        while self.state["epoch"] < self.end_epoch and not self.state["stopped"]:
            self._run_epoch()
        self._dispatch("on_fit_end")
        return self

    def _run_epoch(self) -> None:
        epoch, n, bs = self.state["epoch"], self.n, self.batch_size
        self.epoch_started = time.perf_counter()
        We = self.weights
        if self.shuffle:
            order = np.random.default_rng([self.seed, epoch]).permutation(n)
            # np.take: the same rows as X[order], gathered in half the time
            Xe, Ye = np.take(self.X, order, axis=0), np.take(self.Y, order, axis=0)
            if We is not None:
                We = np.take(We, order, axis=0)
        else:
            order, Xe, Ye = None, self.X, self.Y
        self.order = order
        self.X_epoch, self.Y_epoch = Xe, Ye
        self.record = {"epoch": epoch + 1}
        self.seen, self.loss_sum = 0, 0.0
        self._dispatch("on_epoch_start")
        trainer = self.trainer
        train = trainer.train_batch
        if self.tbptt is not None:
            train = self._train_chunks
        if We is not None:
            train = _with_weights(train, We)
        calls = self._calls["on_batch_end"]
        want = self._needs_outputs
        last_outputs = getattr(trainer, "last_outputs", None) if want else None
        if self.tbptt is not None and last_outputs is not None:
            last_outputs = self._chunk_outputs
        logits_ok = self._logits_ok
        dropout, seed = self._dropout, self.seed
        kw: dict = {}  # dropout: the batch's key, which decides its masks
        total = 0.0
        done = n
        out = None
        fn = None
        for b, start in enumerate(range(0, n, bs)):
            xb, yb = Xe[start:start + bs], Ye[start:start + bs]
            if dropout:
                kw = {"dropout_key": (seed, epoch, b)}
            if We is not None:
                train.start = start
            if not want:
                value = train(xb, yb, **kw)
            elif last_outputs is not None:
                value = train(xb, yb, **kw)
                out = last_outputs(logits_ok)
            else:  # an engine that cannot hand back its outputs: the reference engine computes them
                out = self._reference_predict(self.net, trainer.params(), xb, **kw)
                value = train(xb, yb, **kw)
            if not math.isfinite(value):
                raise NomagicError(
                    f"training diverged at epoch {epoch + 1} (loss {value}); lower the "
                    "learning rate, clip gradients (clip_norm=1.0) or scale the inputs")
            total += value * len(xb)
            if calls:
                self.batch, self.seen, self.loss_sum, self.batch_loss = b, start + len(xb), total, value
                self.xb, self.yb, self.outputs = xb, yb, out
                try:
                    for fn in calls:
                        fn(self)
                except NomagicError:
                    raise
                except Exception as exc:
                    raise _callback_error(fn, "on_batch_end", exc) from exc
                if self.state["stopped"]:
                    done = self.seen
                    break
        self.seen, self.loss_sum = done, total
        self.record["loss"] = total / done
        self.xb = self.yb = self.outputs = None
        self.state["epoch"] = epoch + 1
        self._dispatch("on_epoch_end")

    def _train_chunks(self, X: np.ndarray, Y: np.ndarray, sample_weight=None, dropout_key=None) -> float:
        """One mini-batch by truncated BPTT in chunks of ``tbptt`` steps (see the class doc);
        every chunk of the batch gets the batch's ``dropout_key``."""
        trainer, k = self.trainer, self.tbptt
        T = X.shape[1]
        seq = Y.ndim == 3
        want = self._needs_outputs and getattr(trainer, "last_outputs", None) is not None
        drop = {} if dropout_key is None else {"dropout_key": dropout_key}
        outs = []
        state, total = None, 0.0
        for a in range(0, T, k):
            b = min(a + k, T)
            if not seq and b < T:  # targets for the last step only: carry the state forward
                state = trainer.advance(X[:, a:b], state, **drop)
                continue
            kw = dict(drop) if state is None else {"state": state, **drop}
            if sample_weight is not None:
                kw["sample_weight"] = sample_weight[:, a:b] if seq and sample_weight.ndim == 2 else sample_weight
            value = trainer.train_batch(X[:, a:b], Y[:, a:b] if seq else Y, **kw)
            total += value * (b - a) if seq else value
            if want:
                outs.append(np.array(trainer.last_outputs(self._logits_ok)))
            if b < T:
                state = trainer.last_state()
        self._outs = (np.concatenate(outs, axis=1) if seq else outs[-1]) if want else None
        return total / T if seq else total

    def _chunk_outputs(self, logits_ok: bool = False):
        return self._outs

    def close(self) -> None:
        """Release the trainer (processes, threads). Safe to call twice."""
        if self.trainer is not None:
            self.trainer.close()

    def __enter__(self) -> Loop:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _with_weights:
    """``train(xb, yb)`` that also passes the batch's rows of the epoch's weights (the loop sets
    ``start`` before each batch)."""

    def __init__(self, train, weights: np.ndarray) -> None:
        self.train, self.weights, self.start = train, weights, 0

    def __call__(self, xb, yb, **kw) -> float:
        return self.train(xb, yb, sample_weight=self.weights[self.start:self.start + len(xb)], **kw)


def _as_handler(h):
    """A handler as given, or an ``nm.ReduceLROnPlateau`` wrapped in its handler."""
    from .schedules import ReduceLROnPlateau

    if isinstance(h, ReduceLROnPlateau):
        from .handlers import PlateauHandler

        return PlateauHandler(h)
    return h


def _callback_error(fn, event: str, exc: Exception) -> CallbackError:
    owner = getattr(fn, "__self__", None)
    name = type(owner).__name__ if owner is not None else getattr(fn, "__qualname__", repr(fn))
    return CallbackError(f"callback {name}.{event} raised {type(exc).__name__}: {exc}")
