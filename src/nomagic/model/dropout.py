"""Dropout: ``nm.dropout(rate)``, a layer of identity neurons that drops its inputs in training.

In the graph, a dropout layer is a population of linear neurons without bias, fed one-to-one
(fixed weight 1) by the previous population, whose ``Population.dropout`` is the rate. So it is a
layer like any other: every engine runs it, ONNX exports it as the identity, torch conversion
maps it to ``nn.Dropout``, and it is the identity whenever no *dropout key* is given.

**Inverted dropout.** In a training step, neuron ``j`` of such a population outputs
``a = x · m / (1 − rate)`` with a mask ``m ∈ {0, 1}`` per (neuron, sample), and its delta is
multiplied by the same factor on the way back. The expected activation is the input, so nothing
needs rescaling at inference.

**The mask is a pure function** of ``(seed, epoch, batch, neuron, sample)``:
:func:`keep` hashes the five integers with SplitMix64's finaliser (a counter-based generator, as
Philox is), so no engine holds random state: the tensor engine computes a whole layer's masks at
once, a neuron process computes its own for the batch's samples, and they agree bit for bit.

* ``seed``, ``epoch``, ``batch`` make the *dropout key*. ``nm.fit`` (the ``Loop``) passes
  ``(seed, epoch, b)``: its ``seed``, the epoch counted from the start of training (so continuing
  a run gives the masks of one long run), and the mini-batch's index within the epoch. An
  engine's ``loss_and_grad(..., dropout_key=(seed, epoch, batch))`` and
  ``Trainer.train_batch(X, Y, dropout_key=...)`` take it too; without a key (``None``, the
  default, and always in ``predict``) dropout layers are the identity.
* ``neuron`` is the neuron's global index in the network: populations in order, the input
  sensors first (the processes engine's ``Wiring`` numbering), so two dropout layers of the
  same size still draw different masks.
* ``sample`` is the sample's position in the mini-batch (the rows as the engine is given them):
  the mask depends on where a sample sits in the batch, which ``nm.fit`` decides by its seeded
  permutation. A key may carry a fourth number, the position of the first row (default 0), for an
  engine that works on a share of the batch (the ray engine's data-parallel workers).
* **Time steps**: the mask has no time index. In a recurrent network every step of a sequence
  uses the same mask (variational dropout, Gal & Ghahramani 2016). Dropout sits between layers
  only: a dropout population may not feed a recurrent synapse, so recurrent connections are
  never dropped.
"""

from __future__ import annotations

import numbers

import numpy as np

from ..errors import GraphError, InvalidInputError

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_START = np.uint64(0x6A09E667F3BCC908)  # the hash of nothing: √2's fractional bits
_S30, _S27, _S31, _S11 = np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(11)
_ONE53 = 1 << 53
_MASK64 = (1 << 64) - 1


def _mix(x: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser: a bijection of 64-bit integers that scrambles every bit."""
    x = (x ^ (x >> _S30)) * _M1
    x = (x ^ (x >> _S27)) * _M2
    return x ^ (x >> _S31)


def _u64(v) -> np.ndarray:
    return np.asarray(v, dtype=np.uint64) if isinstance(v, np.ndarray) else np.array(int(v) & _MASK64, np.uint64)


def hash_bits(seed, epoch, batch, neuron, sample) -> np.ndarray:
    """64 random-looking bits for each (seed, epoch, batch, neuron, sample); the arguments are
    non-negative integers or integer arrays, broadcast together."""
    with np.errstate(over="ignore"):
        h = _START
        for v in (seed, epoch, batch, neuron, sample):
            h = _mix((h ^ _u64(v)) + _GOLDEN)
    return h


def threshold(rate: float) -> np.uint64:
    """A 53-bit draw u is kept when u ≥ this: probability 1 − rate (to 2⁻⁵³)."""
    return np.uint64(int(rate * _ONE53))


def keep(seed, epoch, batch, neuron, sample, rate: float) -> np.ndarray:
    """True where the neuron keeps its value for that sample: the dropout mask, a pure function
    of its arguments (integers or integer arrays, broadcast together)."""
    return (hash_bits(seed, epoch, batch, neuron, sample) >> _S11) >= threshold(rate)


def mask(rate: float, key: tuple, neurons: np.ndarray, B: int, dtype) -> np.ndarray:
    """The (B, len(neurons)) multipliers of one training batch: ``1/(1 − rate)`` where kept, 0
    where dropped, in ``dtype``. ``key`` is a checked dropout key (see :func:`check_key`)."""
    seed, epoch, batch = key[0], key[1], key[2]
    first = key[3] if len(key) > 3 else 0
    samples = np.arange(first, first + B, dtype=np.uint64)[:, None]
    kept = keep(seed, epoch, batch, np.asarray(neurons, dtype=np.uint64)[None, :], samples, rate)
    dt = np.dtype(dtype)
    return np.where(kept, dt.type(1.0 / (1.0 - rate)), dt.type(0.0))


def check_key(key) -> tuple | None:
    """``None`` (no dropout) or ``(seed, epoch, batch)`` / ``(seed, epoch, batch, first_row)``,
    non-negative integers; returns it as a tuple of ints."""
    if key is None:
        return None
    if not isinstance(key, (tuple, list)) or len(key) not in (3, 4) or any(
            isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 0 for v in key):
        raise InvalidInputError("dropout_key must be None or (seed, epoch, batch) — optionally with the "
                                f"position of the first row — of non-negative integers; got {key!r}")
    return tuple(int(v) for v in key)


def shift_key(key: tuple, rows: int) -> tuple:
    """The key of a share of the batch that starts ``rows`` rows further on (its ``first_row``
    moved by ``rows``): the share's masks are the rows of the whole batch's masks. Used by the
    tensor engine's ``predict(..., batch_size=N)`` (the ray engine's data-parallel shares do the same)."""
    if not rows:
        return key
    first = key[3] if len(key) > 3 else 0
    return (key[0], key[1], key[2], first + int(rows))


def check_rate(rate) -> float:
    """A dropout rate: a real number in [0, 1)."""
    if isinstance(rate, bool) or not isinstance(rate, numbers.Real) or not np.isfinite(float(rate)) \
            or not 0.0 <= float(rate) < 1.0:
        raise InvalidInputError(f"the dropout rate must be a number in [0, 1) (the fraction of values "
                                f"dropped); got {rate!r}")
    return float(rate)


def neuron_ids(net, name: str) -> np.ndarray:
    """The global indices of population ``name``'s neurons: populations in order, sensors first."""
    start = 0
    for pop in net.populations:
        if pop.name == name:
            return np.arange(start, start + pop.size, dtype=np.uint64)
        start += pop.size
    raise GraphError(f"no population named {name!r}")


def dropout_populations(net) -> tuple:
    """``(population, neuron ids)`` of every population with a dropout rate, in order."""
    return tuple((p, neuron_ids(net, p.name)) for p in net.populations if p.dropout)


def has_dropout(net) -> bool:
    return any(p.dropout for p in net.populations)


def dropout(rate: float, name: str | None = None):
    """A dropout layer: ``nm.inputs(4) | nm.dense(16, "relu") | nm.dropout(0.5) | nm.dense(3)``.

    In training (``nm.fit``) each value is dropped with probability ``rate`` and the kept ones
    are scaled by ``1/(1 − rate)`` (inverted dropout); in ``predict`` it is the identity. The
    masks are decided by (seed, epoch, batch, neuron, sample), identically on every engine (see
    this module's documentation). After a recurrent layer, a sequence keeps one mask for all its
    steps.
    """
    from .graph import Block, Layer, Population, with_populations
    from .layers import Stage, _check_name, last_output

    rate = check_rate(rate)

    def build(net):
        layer = _check_name(net, name, "dropout")
        src = last_output(net)
        pop = Population(name=layer, size=src.size, activation="linear", bias=None, layer=layer,
                         static=src.static, dropout=rate)
        block = Block(src.name, layer, "one_to_one")
        return with_populations(net, [pop], [block], Layer(layer, "dropout", (layer,), layer, {"rate": rate}))

    return Stage(build, f"dropout({rate!r})")
