"""Data-parallel: every worker computes the gradient of its share of the global batch.

The global batch is cut into contiguous shares of nearly equal size, one per worker; each
worker runs the tensor engine on its share (``worker.Worker.grad``) with the current params
(put once into Ray's object store per step); the driver combines the mean losses and gradients
weighted by the shares' sizes — the mean over the whole batch — adds the penalty, clips, and
steps the optimizer once, on one flat vector, as the tensor engine's Trainer does. The params
are those of single-process training with the same global batch, to rounding.

The workers keep nothing but the network, so a worker that dies is simply replaced and its
share computed again (more than ``max_restarts`` deaths within ``restart_period`` seconds end
the run with an ``EngineError`` naming it); every wait is bounded by ``timeout``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from ...model.graph import Network
from ...model.params import FlatLayout, Params, check_params
from ..base import GradientStep, OptState
from ..objective import check_truncate, regularise, weight_mask
from .model import RoundInfo, _check_workers, _Died, check_common, check_worker_errors, default_workers
from .session import Session


def shares(n: int, workers: int) -> list[tuple[int, int]]:
    """Contiguous (start, stop) rows of each worker's share of n rows (empty shares left out)."""
    bounds = np.linspace(0, n, workers + 1).round().astype(int) if n >= workers else np.arange(n + 1)
    return [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]


class DataParallel:
    """The workers of data-parallel training, and the optimizer step in the driver."""

    def __init__(self, net: Network, params, optimizer=None, opt_state=None, loss="mse", *, l1: float = 0.0,
                 l2: float = 0.0, clip_norm: float | None = None, truncate: int | None = None,
                 workers: int | None = None, address: str | None = None, timeout: float = 300.0,
                 max_restarts: int = 3, restart_period: float | None = 60.0,
                 on_round: Callable[[RoundInfo], Any] | None = None, actor_options: dict | None = None) -> None:
        self.timeout, self.deaths = check_common(net, timeout, max_restarts, restart_period, on_round)
        check_truncate(truncate)
        self.on_round, self.actor_options = on_round, actor_options
        P = check_params(net, params)
        self.net = net
        self.loss_name = getattr(loss, "name", loss)
        self.truncate = truncate
        self.optimizer = optimizer or GradientStep()
        self.l1, self.l2, self.clip_norm = l1, l2, clip_norm
        dt = next(iter(P.values())).dtype if P else np.dtype(np.float64)
        self.layout = FlatLayout({s.key: s.shape for s in net.param_specs()})
        self.flat = self.layout.flatten(P, dt)
        self.tmp = np.empty_like(self.flat)
        opt_state = opt_state or self.optimizer.init(P)
        self.step_count = opt_state.step
        self.slots = {s: self.layout.flatten(opt_state.slots[s], dt) for s in self.optimizer.slot_names}
        self.weight_mask = weight_mask(net, self.layout, self.flat, l1, l2)
        self.session = Session(address)
        self.actors: list = []
        self.closed = self.broken = False
        self.steps_done = 0
        self.last: dict = {}
        try:
            n = _check_workers(workers) if workers is not None else default_workers(self.session.ray)
            self.n_workers = n
            self._spec = net.to_dict()
            self.actors = self.session.actors(n, actor_options, self.timeout)
            self._setup(list(range(n)))
        except BaseException:
            self.close()
            raise

    def worker_name(self, k: int) -> str:
        return f"ray worker {k} (data-parallel share {k + 1} of {self.n_workers})"

    def _setup(self, which: list[int]) -> None:
        refs = {k: self.actors[k].setup_data.remote(self._spec, self.loss_name, self.truncate) for k in which}
        check_worker_errors(self.session.ray, refs, self.timeout, self.worker_name)

    def _map(self, method: str, args: dict[int, tuple]) -> dict[int, Any]:
        """Call ``method(*args[k])`` on worker k for every k, replacing workers that die."""
        results: dict[int, Any] = {}
        todo = dict(args)
        try:
            while todo:
                if self.on_round is not None:
                    self.on_round(RoundInfo("data", self.steps_done, 0, list(self.actors)))
                refs = {k: getattr(self.actors[k], method).remote(*a) for k, a in todo.items()}
                try:
                    results.update(check_worker_errors(self.session.ray, refs, self.timeout, self.worker_name))
                    todo = {}
                except _Died as exc:
                    for k, error in sorted(exc.workers.items()):
                        self.deaths.died(k, self.worker_name(k), error)
                        self.session.kill(self.actors[k])
                        self.actors[k] = self.session.new_actor(self.actor_options)
                    self._setup(sorted(exc.workers))
                    # the others' answers stand (computed from the same params): ask again only the new
                    for k in list(todo):
                        if k not in exc.workers:
                            results[k] = self.session.ray.get(refs[k], timeout=self.timeout)
                    todo = {k: a for k, a in todo.items() if k in exc.workers}
        except BaseException:
            self.broken = True
            raise
        return results

    def gradient(self, X: np.ndarray, Y: np.ndarray, dropout: tuple | None = None) -> tuple[float, np.ndarray]:
        """(mean loss, flat mean gradient) over the whole batch, from the shares. ``dropout``:
        the batch's dropout key; each share's rows keep their positions in the whole batch."""
        t0 = time.perf_counter()
        n = len(X)
        cut = shares(n, self.n_workers)
        ref = self.session.ray.put(self.flat)
        if dropout is None:
            out = self._map("grad", {k: (ref, X[a:b], Y[a:b]) for k, (a, b) in enumerate(cut)})
        else:
            first = dropout[3] if len(dropout) > 3 else 0
            out = self._map("grad", {k: (ref, X[a:b], Y[a:b], (*dropout[:3], first + a))
                                     for k, (a, b) in enumerate(cut)})
        value = 0.0
        g = np.zeros_like(self.flat)
        for k, (a, b) in enumerate(cut):  # in worker order: the same sums every time
            v, gk, _ = out[k]
            wgt = (b - a) / n
            value += wgt * v
            g += wgt * gk
        self.last = {"seconds": time.perf_counter() - t0, "actor_seconds": [out[k][2] for k in range(len(cut))],
                     "bytes_out": int(self.flat.nbytes * len(cut) + X.nbytes + Y.nbytes),
                     "bytes_in": int(sum(out[k][1].nbytes for k in out))}
        return value, g

    def train_batch(self, X: np.ndarray, Y: np.ndarray, dropout: tuple | None = None) -> float:
        value, g = self.gradient(X, Y, dropout)
        w = self.flat
        value = regularise(value, g, w, self.weight_mask, self.l1, self.l2, self.clip_norm)
        self.step_count += 1
        self.optimizer.apply_(self.step_count, w, g, self.slots, self.tmp)
        self.steps_done += 1
        return value

    def predict(self, X: np.ndarray) -> np.ndarray:
        cut = shares(len(X), self.n_workers)
        if not cut:
            return self.predict_rows(X)
        ref = self.session.ray.put(self.flat)
        out = self._map("predict", {k: (ref, X[a:b]) for k, (a, b) in enumerate(cut)})
        return np.concatenate([out[k] for k in range(len(cut))], axis=0)

    def predict_rows(self, X: np.ndarray) -> np.ndarray:
        return self.session.ray.get(self.actors[0].predict.remote(self.flat, X), timeout=self.timeout)

    def params(self) -> Params:
        return self.layout.to_params(self.flat)

    def set_params(self, params) -> None:
        self.flat[...] = self.layout.flatten(check_params(self.net, params, self.flat.dtype), self.flat.dtype)

    def opt_state(self) -> OptState:
        return OptState(self.step_count, {s: self.layout.to_params(v) for s, v in self.slots.items()})

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            if self.actors:
                for a in self.actors:
                    try:
                        a.unload.remote()
                    except Exception:
                        self.broken = True
                self.session.give_back(self.actors, not self.broken)
            self.actors = []
        finally:
            self.session.close()
