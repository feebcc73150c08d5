"""The neuron-level wiring of a network, as flat arrays: what the processes engine spawns.

Built with NumPy from the network's populations and blocks, so that a million neurons cost
megabytes and a second, not gigabytes and minutes.
"""

from __future__ import annotations

import numpy as np

from ...errors import EngineError, InvalidInputError
from ...model.graph import Network
from ..cache import PlanCache


class Wiring:
    """The neuron-level graph of a network as flat arrays (compressed rows), built with NumPy.

    Global indices: the sensors first, then every neuron, population after population. Each
    neuron's incoming synapses are ``in_ptr[g]:in_ptr[g+1]`` in ``in_src`` (source), ``in_param``
    (index into the flat param vector, -1 for a fixed weight), ``in_fixed``, ``in_rec`` and
    ``in_dslot`` (the slot this synapse's delta takes at its source). Outgoing synapses are
    ``out_ptr[g]:out_ptr[g+1]`` in ``out_dst``, ``out_slot`` (input slot at the consumer) and
    ``out_rec``. Arrays, not objects: a million neurons cost megabytes, not gigabytes.
    """

    def __init__(self, net: Network) -> None:
        from ...model.params import FlatLayout

        self.net = net
        temporal = net.is_recurrent
        pops = list(net.populations)
        self.n_sensors = pops[0].size
        self.start: dict[str, int] = {}
        g = 0
        for pop in pops:
            self.start[pop.name] = g
            g += pop.size
        self.size = g
        self.n_neurons = g - self.n_sensors
        self.pops = pops[1:]
        self.layout = FlatLayout({s.key: s.shape for s in net.param_specs()})
        self.pop_of = np.zeros(g, dtype=np.int32)  # population index (into self.pops), -1 sensor
        self.pop_of[:self.n_sensors] = -1
        self.bias_param = np.full(g, -1, dtype=np.int64)
        self.static = np.zeros(g, dtype=bool)
        src, dst, param, fixed, rec = [], [], [], [], []
        for k, pop in enumerate(self.pops):
            lo = self.start[pop.name]
            self.pop_of[lo:lo + pop.size] = k
            self.static[lo:lo + pop.size] = pop.static or not temporal
            if pop.bias is not None:
                self.bias_param[lo:lo + pop.size] = self.layout.offsets[pop.bias][0] + np.arange(pop.size)
            if pop.aggregation == "product":
                for b in net.incoming(pop.name):
                    per_neuron = (np.ones(pop.size, int) if b.kind == "one_to_one" else
                                  (b.mask.sum(axis=0) if b.mask is not None
                                   else np.full(pop.size, net.population(b.source).size)))
                    if np.any(per_neuron != 1):
                        raise EngineError(f"population {pop.name!r} multiplies a block with several "
                                          "synapses per neuron; the processes engine needs one "
                                          "synapse per factor")
            for b in net.incoming(pop.name):
                s_lo = self.start[b.source]
                n_src = net.population(b.source).size
                if b.kind == "one_to_one":
                    rows = cols = np.arange(pop.size)
                    param.append(np.full(pop.size, -1, dtype=np.int64))
                    fixed.append(np.full(pop.size, b.scale))
                else:
                    mask = b.mask if b.mask is not None else np.ones((n_src, pop.size), dtype=bool)
                    rows, cols = np.nonzero(mask)
                    param.append(self.layout.offsets[b.weight][0] + rows * pop.size + cols)
                    fixed.append(np.zeros(len(rows)))
                src.append(s_lo + rows)
                dst.append(lo + cols)
                rec.append(np.full(len(rows), b.recurrent))
        if not temporal:
            self.static[:self.n_sensors] = True  # one step: everything runs once
        def cat(parts, dt):
            return np.concatenate(parts).astype(dt) if parts else np.zeros(0, dt)

        src, dst = cat(src, np.int64), cat(dst, np.int64)
        param, fixed, rec = cat(param, np.int64), cat(fixed, np.float64), cat(rec, bool)
        order = np.argsort(dst, kind="stable")  # by target; block order, then row order within
        self.in_src, self.in_param = src[order], param[order]
        self.in_fixed, self.in_rec = fixed[order], rec[order]
        self.in_ptr = np.concatenate([[0], np.cumsum(np.bincount(dst, minlength=g))])
        out_order = np.argsort(self.in_src, kind="stable")  # by source, in target order
        self.out_ptr = np.concatenate([[0], np.cumsum(np.bincount(self.in_src, minlength=g))])
        in_target = np.repeat(np.arange(g), np.diff(self.in_ptr))
        self.out_dst = in_target[out_order]
        self.out_slot = (np.arange(len(order)) - self.in_ptr[in_target])[out_order]
        self.out_rec = self.in_rec[out_order]
        self.in_dslot = np.empty(len(order), dtype=np.int64)
        self.in_dslot[out_order] = np.arange(len(order)) - self.out_ptr[self.in_src[out_order]]
        # most neurons are "plain": each synapse out of (into) them carries the value of the same
        # step to (from) a neuron that runs as often; they send by a shorter path
        out_src = self.in_src[out_order]
        odd = self.out_rec | (self.static[self.out_dst] & ~self.static[out_src])
        self.plain_out = np.bincount(out_src[odd], minlength=g) == 0
        odd = self.in_rec | (self.static[in_target] & ~self.static[self.in_src])
        self.plain_in = np.bincount(in_target[odd], minlength=g) == 0
        if temporal and np.any(self.static[dst[rec]] if len(dst) else False):
            raise EngineError("a population that runs once per sequence has a recurrent synapse; "
                              "the processes engine cannot run that")
        # outputs: one actuator per output segment; an output neuron's gradient takes the
        # delta slot after its consumers'
        self.actuators = [self.start[name] + np.asarray(ix, dtype=np.int64)
                          for name, ix in net.outputs]
        self.output_of = np.full(g, -1, dtype=np.int64)
        self.output_pos = np.full(g, -1, dtype=np.int64)
        for k, members in enumerate(self.actuators):
            self.output_of[members] = k
            self.output_pos[members] = np.arange(len(members))
        self.n_trainable = np.bincount(in_target[self.in_param >= 0], minlength=g)
        # the same as Python lists: what each neuron reads when a batch begins, read fast
        for name in ("in_ptr", "in_src", "in_rec", "in_dslot", "out_ptr", "out_dst", "out_slot",
                     "out_rec", "static", "pop_of", "bias_param", "output_of", "output_pos",
                     "n_trainable", "plain_out", "plain_in"):
            setattr(self, f"{name}_l", getattr(self, name).tolist())

    def name(self, g: int) -> str:
        """A neuron's or sensor's name, as in ``net.neurons()``."""
        if g < self.n_sensors:
            return self.net.populations[0].neuron_name(int(g))
        pop = self.pops[self.pop_of[g]]
        return pop.neuron_name(int(g - self.start[pop.name]))

    def index_of(self, name: str) -> int:
        for pop in self.net.populations:
            for i in range(pop.size):
                if pop.neuron_name(i) == name:
                    return self.start[pop.name] + i
        raise InvalidInputError(f"no neuron named {name!r}")

    def param_index(self, g: int) -> np.ndarray:
        """Where neuron g's own params p (its trainable weights, then its bias) live in the
        network's flat param vector."""
        lo, hi = self.in_ptr[g], self.in_ptr[g + 1]
        idx = self.in_param[lo:hi]
        idx = idx[idx >= 0]
        bias = self.bias_param[g]
        return np.append(idx, bias) if bias >= 0 else idx

    def own_params(self) -> tuple[np.ndarray, np.ndarray]:
        """``param_index`` of every neuron at once: (index, ptr), neuron g's positions being
        ``index[ptr[k]:ptr[k + 1]]`` with k = g − n_sensors. Made with NumPy when asked for, and
        not kept: it is one int per param (98 per digits neuron, more than the rest of what a
        neuron process costs), and only starting, ``params()`` and ``set_params`` need it."""
        keep = self.in_param >= 0
        owner = np.repeat(np.arange(self.size), np.diff(self.in_ptr))[keep]  # ascending
        has_bias = self.bias_param >= 0
        ptr = np.concatenate([[0], np.cumsum(self.n_trainable + has_bias)])
        index = np.empty(int(ptr[-1]), dtype=np.int64)
        rank = np.arange(len(owner)) - np.searchsorted(owner, owner)  # its place among g's
        index[ptr[owner] + rank] = self.in_param[keep]
        gb = np.flatnonzero(has_bias)
        index[ptr[gb + 1] - 1] = self.bias_param[gb]  # the bias comes last
        return index, ptr[self.n_sensors:]

    def split(self, flat: np.ndarray, own: tuple | None = None) -> list[np.ndarray]:
        """Each neuron's own params, cut out of the network's flat param vector: views into
        one gathered copy (a slice costs far less than a gather per neuron). ``own``: what
        ``own_params()`` gave, to make it once for several calls."""
        index, ptr = self.own_params() if own is None else own
        values = flat[index]
        bounds = ptr.tolist()
        return [values[a:b] for a, b in zip(bounds[:-1], bounds[1:])]

    def join(self, ps: list[np.ndarray], dtype, own: tuple | None = None) -> np.ndarray:
        """The network's flat param vector, gathered back from every neuron's p."""
        flat = np.zeros(self.layout.size, dtype=dtype)
        if ps:
            flat[(self.own_params() if own is None else own)[0]] = np.concatenate(ps)
        return flat


_WIRINGS: PlanCache[Wiring] = PlanCache()


def wiring_for(net: Network) -> Wiring:
    """The neuron-level wiring of ``net``, made once per network."""
    return _WIRINGS.get(net, Wiring)


