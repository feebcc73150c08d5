"""Every message the processes of a network exchange, as named types.

A message is a tuple whose first item is its tag (``msg[0]``): roles dispatch on the tag and unpack
the rest, so a message may be built as its named type (``Commit(b, 1.0)``) or as the plain tuple of
the same layout (``("commit", b, 1.0)``). The hot messages — one per synapse and batch: ``Forward``,
``Delta``, ``PeerZ``, ``PeerDelta``, ``Output`` — are sent as plain tuples: a tuple subclass costs
about three times as much to make (measured ~0.1 µs against ~0.3 µs on the dev VM), and there are
tens of thousands of them per batch. The named types are their documentation, their readers
(``decode``) and what tests write by hand.

Numbering: ``b`` is the batch number the cortex gives each mini-batch, ``t`` the time step,
``slot`` the input (or delta) slot at the receiver, ``g`` a neuron's global index in the wiring.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

_new = tuple.__new__


def _tagged(tag: str):
    """Make a NamedTuple whose first field is ``tag`` take only the other fields."""
    def deco(cls):
        n = len(cls._fields) - 1

        defaults = tuple(cls._field_defaults.values())  # the last fields may have defaults

        def __new__(klass, *args):
            if not n - len(defaults) <= len(args) <= n:
                raise TypeError(f"{klass.__name__} takes {n} values ({', '.join(klass._fields[1:])}); "
                                f"got {len(args)}")
            return _new(klass, (tag, *args, *defaults[len(defaults) - (n - len(args)):]))

        cls.__new__ = __new__
        cls.TAG = tag
        return cls
    return deco


# --- the cortex and the outside ----------------------------------------------------------------


@_tagged("batch")
class RunBatch(NamedTuple):
    """outside → cortex: run one mini-batch. X is (T, B, features); Y None for a prediction;
    ``commit`` False only asks for the gradient; ``dropout`` the batch's dropout key
    (seed, epoch, batch[, first row]) or None (dropout layers are the identity)."""
    tag: str
    X: Any
    Y: Any
    loss: Any
    truncate: int | None
    commit: bool
    dropout: tuple | None = None


def run_batch(X, Y=None, loss=None, truncate: int | None = None, commit: bool = False,
              dropout: tuple | None = None) -> RunBatch:
    """A ``RunBatch`` of checked arrays in user layout ((batch, features), or (batch, time,
    features) for sequences; ``Y`` None for a prediction), put time-major as the cortex reads them."""
    Xe = X[None] if X.ndim == 2 else X.transpose(1, 0, 2)
    Ye = None if Y is None else np.ascontiguousarray(Y.transpose(1, 0, 2) if Y.ndim == 3 else Y)
    return RunBatch(np.ascontiguousarray(Xe), Ye, loss, truncate, commit, dropout)


def user_layout(out: np.ndarray) -> np.ndarray:
    """The cortex's outputs ((time, batch, n) for sequences) in user layout (the batch first)."""
    return out.transpose(1, 0, 2) if out.ndim == 3 else out


@_tagged("get")
class GetParams(NamedTuple):
    """outside → cortex (``reply_to`` None): gather every neuron's params; cortex → neuron:
    send me your p (answered with ``Params``)."""
    tag: str
    reply_to: Any


@_tagged("slots")
class GetSlots(NamedTuple):
    """outside → cortex (``reply_to`` None), cortex → neuron: the optimizer slots and step count
    (answered with ``SlotsReply``)."""
    tag: str
    reply_to: Any


@_tagged("set")
class SetParams(NamedTuple):
    """outside → cortex: per-neuron lists; cortex → neuron: one neuron's p, slots (or None) and
    optimizer step count. Only between batches."""
    tag: str
    p: Any
    slots: Any
    steps: int


@_tagged("stop")
class Stop(NamedTuple):
    """outside → cortex, then cortex → every sensor, neuron and actuator: exit."""
    tag: str


@_tagged("status")
class Status(NamedTuple):
    """a diagnosing probe → neuron, after a hang: what are you waiting for? (``StatusReply``)"""
    tag: str
    reply_to: Any


# --- one mini-batch --------------------------------------------------------------------------


@_tagged("begin")
class Begin(NamedTuple):
    """cortex → neuron, first in every batch: batch b has T steps of B samples; ``train``: a
    backward pass follows; ``fused``: the loss gradient arrives as dz (softmax + cross-entropy);
    ``horizon``: the first step that backward reaches (truncated BPTT); ``dropout``: the dropout
    key (seed, epoch, batch[, first row]) from which a dropout neuron computes its own mask for
    the batch's samples, or None (a prediction, or training without dropout)."""
    tag: str
    b: int
    T: int
    B: int
    train: bool
    fused: bool
    horizon: int
    dropout: tuple | None = None


@_tagged("begin")
class BeginOutputs(NamedTuple):
    """cortex → actuator, first in every batch: gather T steps of B values of dtype ``dtype``."""
    tag: str
    b: int
    T: int
    B: int
    dtype: Any


@_tagged("x")
class Inputs(NamedTuple):
    """cortex → sensor: its feature for batch b, a (T, B) column, one vector per step."""
    tag: str
    b: int
    column: Any


@_tagged("f")
class Forward(NamedTuple):
    """sensor or neuron → neuron (hot; sent as a plain tuple): the value (a length-B vector) of
    input ``slot`` for step t of batch b."""
    tag: str
    b: int
    t: int
    slot: int
    value: Any


@_tagged("pz")
class PeerZ(NamedTuple):
    """softmax neuron → every neuron of its population, itself included (hot): my z at step t;
    ``k`` is my position in the population."""
    tag: str
    b: int
    t: int
    k: int
    z: Any


@_tagged("o")
class Output(NamedTuple):
    """output neuron → its actuator (hot): z and activation a of output position j, step t."""
    tag: str
    b: int
    t: int
    j: int
    z: Any
    a: Any


@_tagged("out")
class Outputs(NamedTuple):
    """actuator → cortex, once it has every output of batch b: Z and A, each (T, n, B)."""
    tag: str
    b: int
    k: int
    Z: Any
    A: Any


@_tagged("grad")
class LossGrad(NamedTuple):
    """cortex → actuator, training only: the loss gradient for its outputs, (T, n, B)."""
    tag: str
    b: int
    G: Any


@_tagged("d")
class Delta(NamedTuple):
    """neuron or actuator → neuron (hot; sent as a plain tuple): the delta (length B) for the
    receiver's output at step t from consumer edge ``slot`` (the last slot: the loss)."""
    tag: str
    b: int
    t: int
    slot: int
    value: Any


@_tagged("pd")
class PeerDelta(NamedTuple):
    """softmax neuron → every neuron of its population (hot): da·a at step t, for Σⱼ daⱼaⱼ."""
    tag: str
    b: int
    t: int
    k: int
    value: Any


@_tagged("ready")
class Ready(NamedTuple):
    """neuron → cortex, when its backward is done: ‖grad‖², its penalty and its gradient."""
    tag: str
    b: int
    g: int
    norm2: float
    cost: float
    grad: Any


@_tagged("commit")
class Commit(NamedTuple):
    """cortex → neuron, when every neuron is ready: update with the gradient times ``scale``
    (clipping), or, ``scale`` None, drop it (the gradient was only asked for)."""
    tag: str
    b: int
    scale: float | None


# --- replies -----------------------------------------------------------------------------------


@_tagged("params")
class Params(NamedTuple):
    """neuron → whoever sent ``GetParams``: a copy of its p."""
    tag: str
    g: int
    p: Any


@_tagged("slots")
class SlotsReply(NamedTuple):
    """neuron → whoever sent ``GetSlots``: copies of its optimizer slots, and its step count."""
    tag: str
    g: int
    slots: dict
    steps: int


@_tagged("status")
class StatusReply(NamedTuple):
    """neuron → the probe that sent ``Status``: what it waits for, in words."""
    tag: str
    g: int
    text: str


# --- reading messages --------------------------------------------------------------------------

KIND_NAMES = {"f": "forward", "d": "delta", "o": "output", "pz": "softmax z", "pd": "softmax delta",
              "x": "inputs", "begin": "begin batch", "commit": "commit", "ready": "ready",
              "out": "outputs", "grad": "loss gradient", "batch": "batch", "get": "get params",
              "set": "set params", "slots": "slots", "params": "params", "status": "status", "stop": "stop"}
"""A tag in words, for traces."""

_BY_TAG: dict[str, tuple[type, ...]] = {}
for _cls in (RunBatch, GetParams, GetSlots, SetParams, Stop, Status, Begin, BeginOutputs, Inputs, Forward,
             PeerZ, Output, Outputs, LossGrad, Delta, PeerDelta, Ready, Commit, Params, SlotsReply,
             StatusReply):
    _BY_TAG.setdefault(_cls.TAG, ())
    _BY_TAG[_cls.TAG] += (_cls,)


def decode(msg: Any) -> Any:
    """The named type of a message sent as a plain tuple (by its tag and length); anything else as it is."""
    if type(msg) is tuple and msg and type(msg[0]) is str:
        for cls in _BY_TAG.get(msg[0], ()):
            if len(cls._fields) == len(msg):
                return _new(cls, msg)
    return msg


def tag_of(msg: Any) -> str:
    """A message's tag (its first item), or its type's name for anything else."""
    if isinstance(msg, tuple) and msg and type(msg[0]) is str:
        return msg[0]
    return type(msg).__name__


__all__ = ["Begin", "BeginOutputs", "Commit", "Delta", "Forward", "GetParams", "GetSlots", "Inputs", "KIND_NAMES",
           "LossGrad", "Output", "Outputs", "Params", "PeerDelta", "PeerZ", "Ready", "RunBatch", "SetParams",
           "SlotsReply", "Status", "StatusReply", "Stop", "decode", "tag_of"]
