"""Which Ray worker holds which neuron: a partition of the network's neurons.

Chosen automatically, a population stays on one worker unless there are fewer populations than
workers (then the heaviest populations are cut in halves until there are enough pieces), and the
pieces, in the network's order, are dealt out to the workers as contiguous runs: for a chain of
layers that cuts only the synapses between neighbouring layers. Of the ways to cut the run, the
one with the smallest ``max load + cut`` wins, where a piece's load is its synapses plus its
neurons (the work of a step) and the cut counts the synapses between neurons on different
workers (each a message between actors, every step). ``partition=`` gives one explicitly.

Nothing here needs Ray.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping

import numpy as np

from ...errors import InvalidInputError

MAX_CANDIDATES = 5000  # ways of cutting the run of pieces that are scored one by one


def neuron_loads(wiring) -> np.ndarray:
    """The work of each neuron (indexed by g − n_sensors): its incoming synapses, plus one."""
    return np.diff(wiring.in_ptr)[wiring.n_sensors:] + 1


def cut_synapses(wiring, owner: np.ndarray) -> int:
    """Synapses between neurons held by different workers (``owner`` per neuron); the synapses
    from sensors are left out: they come from the driver whatever the partition."""
    ns = wiring.n_sensors
    src, dst = wiring.in_src, np.repeat(np.arange(wiring.size), np.diff(wiring.in_ptr))
    keep = src >= ns
    return int(np.count_nonzero(owner[src[keep] - ns] != owner[dst[keep] - ns]))


def _pieces(wiring, workers: int) -> list[tuple[int, int]]:
    """Populations as (lo, hi) ranges of neuron indices, the heaviest cut in halves until there
    are at least ``workers`` pieces (a softmax population, whose neurons talk to each other, last)."""
    ns = wiring.n_sensors
    pieces = [(wiring.start[p.name] - ns, wiring.start[p.name] - ns + p.size, p.activation == "softmax")
              for p in wiring.pops if p.size]
    load = np.concatenate([[0], np.cumsum(neuron_loads(wiring))])
    while len(pieces) < workers:
        cand = [i for i, (lo, hi, _) in enumerate(pieces) if hi - lo >= 2]
        if not cand:
            raise InvalidInputError(f"workers={workers} but the network has only {wiring.n_neurons} neurons; "
                                    "give at most one worker per neuron")
        i = max(cand, key=lambda i: (not pieces[i][2], load[pieces[i][1]] - load[pieces[i][0]]))
        lo, hi, sm = pieces[i]
        mid = (lo + hi) // 2
        pieces[i:i + 1] = [(lo, mid, sm), (mid, hi, sm)]
    return [(lo, hi) for lo, hi, _ in pieces]


def auto_partition(wiring, workers: int) -> np.ndarray:
    """The owner (worker index) of every neuron, chosen as the module says."""
    n = wiring.n_neurons
    if workers == 1:
        return np.zeros(n, dtype=np.int64)
    pieces = _pieces(wiring, workers)
    loads = neuron_loads(wiring)
    piece_load = np.array([loads[lo:hi].sum() for lo, hi in pieces])
    k = len(pieces)

    def owner_for(cuts: tuple[int, ...]) -> np.ndarray:
        owner = np.empty(n, dtype=np.int64)
        bounds = (0, *cuts, k)
        for w in range(workers):
            for lo, hi in pieces[bounds[w]:bounds[w + 1]]:
                owner[lo:hi] = w
        return owner

    def score(cuts: tuple[int, ...]) -> float:
        bounds = (0, *cuts, k)
        worst = max(piece_load[bounds[w]:bounds[w + 1]].sum() for w in range(workers))
        return float(worst + cut_synapses(wiring, owner_for(cuts)))

    gaps = range(1, k)
    count = _comb(k - 1, workers - 1)
    if count <= MAX_CANDIDATES:
        best = min(itertools.combinations(gaps, workers - 1), key=score)
    else:  # too many to score: balance the load along the run
        total = np.cumsum(piece_load)
        targets = total[-1] * np.arange(1, workers) / workers
        cuts, last = [], 0
        for w, t in enumerate(targets):
            c = int(np.searchsorted(total, t)) + 1
            c = min(max(c, last + 1), k - (workers - 1 - w))
            cuts.append(c)
            last = c
        best = tuple(cuts)
    return owner_for(best)


def _comb(n: int, r: int) -> int:
    from math import comb

    return comb(n, r) if 0 <= r <= n else 0


def explicit_partition(wiring, workers: int | None, given: Mapping) -> tuple[np.ndarray, int]:
    """``partition=``: a mapping from population names or neuron names (as in ``net.neurons()``)
    to worker indices; a neuron's own entry wins over its population's. Every neuron must be
    placed and every worker must get one. Returns (owner per neuron, workers)."""
    if not isinstance(given, Mapping) or not given:
        raise InvalidInputError(f"partition must be a non-empty mapping neuron/population -> worker index; "
                                f"got {given!r}")
    ns, n = wiring.n_sensors, wiring.n_neurons
    owner = np.full(n, -1, dtype=np.int64)
    pops = {p.name: p for p in wiring.pops}
    names = None
    neuron_entries = []
    for key, w in given.items():
        if isinstance(w, bool) or not isinstance(w, (int, np.integer)) or w < 0 or \
                (workers is not None and w >= workers):
            raise InvalidInputError(f"partition[{key!r}] must be a worker index in 0..{(workers or 1) - 1}; "
                                    f"got {w!r}")
        if key in pops:
            lo = wiring.start[key] - ns
            owner[lo:lo + pops[key].size] = int(w)
        else:
            neuron_entries.append((key, int(w)))
    for key, w in neuron_entries:
        if names is None:
            names = {wiring.name(g): g for g in range(ns, wiring.size)}
        if key not in names:
            raise InvalidInputError(f"partition names {key!r}, which is no population or neuron of this network")
        owner[names[key] - ns] = w
    if (owner < 0).any():
        missing = [wiring.name(ns + int(i)) for i in np.flatnonzero(owner < 0)[:5]]
        raise InvalidInputError(f"partition leaves {int((owner < 0).sum())} neurons without a worker: "
                                f"{', '.join(missing)}")
    used = int(owner.max()) + 1
    workers = used if workers is None else workers
    empty = sorted(set(range(workers)) - set(owner.tolist()))
    if empty:
        raise InvalidInputError(f"partition gives worker {empty[0]} no neuron; use fewer workers")
    return owner, workers


def describe(wiring, owner: np.ndarray, w: int) -> str:
    """The neurons of worker w, briefly: "dense_0[0..3], dense_1[0..1]"."""
    ns = wiring.n_sensors
    idx = np.flatnonzero(owner == w)
    parts: dict[str, list[int]] = {}
    for i in idx.tolist():
        pop = wiring.pops[wiring.pop_of[ns + i]]
        parts.setdefault(pop.name, []).append(i + ns - wiring.start[pop.name])
    out = [f"{name}[{ix[0]}..{ix[-1]}]" if len(ix) > 1 else f"{name}[{ix[0]}]" for name, ix in parts.items()]
    return ", ".join(out[:4]) + (f" and {len(out) - 4} more populations" if len(out) > 4 else "")
