"""Shared helpers for the test suite: finite differences, random params, torch twins of MLPs.

Helpers are plain functions (import them with ``from conftest import ...``) plus a ``rng``
fixture. Everything numeric here is float64.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import pytest

import nomagic as nm


@pytest.fixture
def use_compiled(monkeypatch):
    """``use_compiled(on)``: the compiled loops (``engines/compiled.py``) on or off for the rest of
    the test, as ``NOMAGIC_NUMBA`` turns them; read afresh after the test."""
    from nomagic.engines import compiled

    def use(on: bool) -> None:
        monkeypatch.setenv("NOMAGIC_NUMBA", "1" if on else "0")
        compiled.reset()
    yield use
    monkeypatch.delenv("NOMAGIC_NUMBA", raising=False)
    compiled.reset()


def dense_step(net, rows: int, dtype, steps: int = 1):
    """A tensor-engine Trainer of ``net`` (Adam, cross-entropy) after ``steps`` steps on a batch of
    ``rows``, and the dense step it made for that batch size (``tensor/fused.py``)."""
    import nomagic as nm
    from nomagic.engines.tensor.engine import Trainer
    from nomagic.model.losses import get_loss

    params = {k: v.astype(dtype) for k, v in net.init(seed=0).items()}
    tr = Trainer(net, params, nm.adam(), nm.adam().init(params), get_loss("cross_entropy"))
    X = np.random.default_rng(0).standard_normal((rows, net.n_inputs)).astype(dtype)
    for _ in range(steps):
        tr.train_batch(X, np.eye(net.n_outputs, dtype=dtype)[np.arange(rows) % net.n_outputs])
    step = next(v for k, v in tr.ws.arrays.items() if isinstance(k, tuple) and k[0] == "dense step")
    return tr, step


@pytest.fixture
def rng() -> np.random.Generator:
    """A fresh, seeded generator per test: tests stay independent and reproducible."""
    return np.random.default_rng(12345)


def numeric_grad(f: Callable[[Mapping[str, np.ndarray]], float], params: Mapping[str, np.ndarray],
                 key: str | None = None, eps: float = 1e-5):
    """Central differences (f(p + eps) - f(p - eps)) / 2eps of ``f(params)``, in float64.

    With ``key`` the gradient of that one array is returned; without it, a dict for every key.
    ``params`` is never changed: each probe builds fresh ``nm.Params``.
    """
    base = {k: np.array(v, dtype=np.float64) for k, v in params.items()}
    keys = [key] if key is not None else list(base)
    out = {}
    for k in keys:
        g = np.zeros_like(base[k])
        for idx in np.ndindex(base[k].shape):
            probe = dict(base)
            arr = base[k].copy()
            arr[idx] += eps
            probe[k] = arr
            plus = f(nm.Params(probe))
            arr = base[k].copy()
            arr[idx] -= eps
            probe[k] = arr
            minus = f(nm.Params(probe))
            g[idx] = (plus - minus) / (2 * eps)
        out[k] = g
    return out[key] if key is not None else out


def numeric_grad_array(f: Callable[[np.ndarray], float], x: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Central differences of a scalar function of one float64 array."""
    x = np.array(x, dtype=np.float64)
    g = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        xp, xm = x.copy(), x.copy()
        xp[idx] += eps
        xm[idx] -= eps
        g[idx] = (f(xp) - f(xm)) / (2 * eps)
    return g


def rel_error(a, b) -> float:
    """‖a − b‖ / (‖a‖ + ‖b‖), and 0 when both are (numerically) zero."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    denom = np.linalg.norm(a) + np.linalg.norm(b)
    if denom < 1e-12:
        return float(np.linalg.norm(a - b))
    return float(np.linalg.norm(a - b) / denom)


def max_grad_rel_error(grads: Mapping[str, np.ndarray], numeric: Mapping[str, np.ndarray]) -> float:
    """The worst relative error, over the whole gradient and over each param key.

    A key's error is ‖a − b‖ / (‖a‖ + ‖b‖), except that the denominator is at least 1e-3 of the
    whole gradient's: a key whose gradient is nearly zero is then judged against the scale of
    the rest instead of against finite differences' rounding noise.
    """
    assert set(grads) == set(numeric)
    keys = sorted(grads)
    a = np.concatenate([np.ravel(grads[k]) for k in keys]).astype(np.float64)
    b = np.concatenate([np.ravel(numeric[k]) for k in keys]).astype(np.float64)
    total = np.linalg.norm(a) + np.linalg.norm(b)
    if total < 1e-12:  # both zero (e.g. behind a step function)
        return float(np.linalg.norm(a - b))
    worst = float(np.linalg.norm(a - b) / total)
    for k in keys:
        ga, gb = np.asarray(grads[k], dtype=np.float64), np.asarray(numeric[k], dtype=np.float64)
        denom = max(np.linalg.norm(ga) + np.linalg.norm(gb), 1e-3 * total)
        worst = max(worst, float(np.linalg.norm(ga - gb) / denom))
    return worst


def random_params(net: nm.Network, seed: int = 0, scale: float = 0.7) -> nm.Params:
    """float64 params with every entry (biases too) drawn from N(0, scale²).

    ``net.init`` zeroes biases; gradient checks want them non-zero so that every formula is used.
    Masked weights stay masked (zero where the mask has no synapse).
    """
    r = np.random.default_rng(seed)
    out = {}
    for spec in net.param_specs():
        a = r.normal(0.0, scale, spec.shape)
        if spec.mask is not None:
            a = a * spec.mask
        out[spec.key] = a
    return nm.Params(out)


def check_net_gradients(net: nm.Network, params, X, Y, loss: str, tol: float = 1e-6) -> float:
    """Assert ``net.loss_and_grad`` agrees with central differences; returns the worst error."""
    value, grads = net.loss_and_grad(params, X, Y, loss=loss)
    assert set(grads) == set(params)
    for k in params:
        assert grads[k].shape == params[k].shape, k

    def f(p):
        return net.loss_and_grad(p, X, Y, loss=loss)[0]

    assert np.isclose(value, f(params), rtol=1e-12, atol=1e-14)
    numeric = numeric_grad(f, params)
    err = max_grad_rel_error(grads, numeric)
    assert err < tol, f"gradient check failed: relative error {err:.3g} (loss {loss})"
    return err


TORCH_ACTIVATIONS = ("linear", "sigmoid", "tanh", "relu", "softmax")


def torch_activation(name: str):
    """The torch module computing nomagic's activation ``name`` (step has no torch twin)."""
    torch = pytest.importorskip("torch")
    return {
        "linear": torch.nn.Identity(),
        "sigmoid": torch.nn.Sigmoid(),
        "tanh": torch.nn.Tanh(),
        "relu": torch.nn.ReLU(),
        "softmax": torch.nn.Softmax(dim=-1),
    }[name]


def dense_layers(net: nm.Network) -> list:
    """The dense layers of a piped MLP, in order: (layer name, units, activation, has bias)."""
    out = []
    for layer in net.layers:
        if layer.kind == "dense":
            out.append((layer.name, layer.config["units"], layer.config["activation"], layer.config["bias"]))
    return out


def torch_mlp_from_params(net: nm.Network, params, *, final_activation: bool = True):
    """An ``nn.Sequential`` of ``nn.Linear`` + activations holding ``params`` in float64.

    nomagic's dense weight has shape (in, out) (forward ``x @ W + b``); ``nn.Linear`` stores
    (out, in) (forward ``x @ W.T + b``), hence the transpose. With ``final_activation=False`` the
    last activation is left out (to feed torch's from-logits losses).
    Returns (model, {nomagic key: torch parameter}) to compare gradients key by key.
    """
    torch = pytest.importorskip("torch")
    modules, mapping = [], {}
    n_in = net.n_inputs
    layers = dense_layers(net)
    for i, (name, units, activation, bias) in enumerate(layers):
        lin = torch.nn.Linear(n_in, units, bias=bias, dtype=torch.float64)
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(np.array(params[f"{name}.weight"], dtype=np.float64).T))
            if bias:
                lin.bias.copy_(torch.from_numpy(np.array(params[f"{name}.bias"], dtype=np.float64)))
        mapping[f"{name}.weight"] = lin.weight
        if bias:
            mapping[f"{name}.bias"] = lin.bias
        modules.append(lin)
        if final_activation or i < len(layers) - 1:
            modules.append(torch_activation(activation))
        n_in = units
    return torch.nn.Sequential(*modules), mapping


def torch_grad_as_ours(key: str, tensor) -> np.ndarray:
    """A torch parameter's gradient in nomagic's layout (weights transposed back)."""
    g = tensor.grad.detach().numpy()
    return g.T if key.endswith(".weight") else g


def random_targets(rng, loss: str, n: int, k: int):
    """Targets fitting ``loss`` for n samples and k outputs (class indices for cross_entropy)."""
    if loss == "mse":
        return rng.normal(size=(n, k))
    if loss == "binary_cross_entropy":
        return rng.uniform(0.0, 1.0, (n, k))
    return rng.integers(0, k, n)
