"""Params: an immutable mapping from keys to read-only arrays, and their initialisation."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import numpy as np

from ..errors import InvalidInputError, ParamsError

DTYPES = {"float32": np.float32, "float64": np.float64}


def as_dtype(dtype) -> np.dtype:
    """``"float32"`` / ``"float64"`` (or the numpy types) → a numpy dtype; anything else fails."""
    try:
        key = np.dtype(dtype).name
    except TypeError:
        key = str(dtype)
    if key not in DTYPES:
        raise InvalidInputError(f"dtype must be 'float32' or 'float64'; got {dtype!r}")
    return np.dtype(DTYPES[key])


class Params(Mapping):
    """Read-only mapping of param key → read-only array. Training returns new Params."""

    __slots__ = ("_arrays",)

    def __init__(self, arrays: Mapping[str, np.ndarray] | None = None, **more) -> None:
        frozen = {}
        for key, value in {**dict(arrays or {}), **more}.items():
            a = np.array(value, copy=True)
            a.setflags(write=False)
            frozen[str(key)] = a
        object.__setattr__(self, "_arrays", frozen)

    @classmethod
    def _adopt(cls, arrays: dict[str, np.ndarray]) -> Params:
        """Wrap arrays this module owns without copying (they are made read-only)."""
        self = cls.__new__(cls)
        for a in arrays.values():
            a.setflags(write=False)
        object.__setattr__(self, "_arrays", arrays)
        return self

    def __setattr__(self, name, value):
        raise AttributeError("Params are immutable; training returns new Params")

    def __getitem__(self, key: str) -> np.ndarray:
        try:
            return self._arrays[key]
        except KeyError:
            raise KeyError(key) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._arrays)

    def __len__(self) -> int:
        return len(self._arrays)

    def __reduce__(self):
        return (Params, (dict(self._arrays),))

    @property
    def dtype(self) -> np.dtype:
        return next(iter(self._arrays.values())).dtype if self._arrays else np.dtype(np.float32)

    def astype(self, dtype) -> Params:
        dt = as_dtype(dtype)
        return Params._adopt({k: v.astype(dt) for k, v in self._arrays.items()})

    def replace(self, **arrays) -> Params:
        """New Params with some arrays replaced (keys must exist)."""
        unknown = set(arrays) - set(self._arrays)
        if unknown:
            raise ParamsError(f"unknown param keys {sorted(unknown)}")
        return Params({**self._arrays, **arrays})

    def __repr__(self) -> str:
        inner = ", ".join(f"{k!r}: {v.dtype}{list(v.shape)}" for k, v in self._arrays.items())
        return f"Params({{{inner}}})"


def init_params(net, seed: int = 0, dtype="float32") -> Params:
    """Initial params: weights scaled to each activation, biases zero, all from ``seed``.

    relu → He normal (std √(2/fan_in)); every other activation → Glorot uniform
    (limit √(6/(fan_in+fan_out))); ``uniform_hidden`` (recurrent cells, as PyTorch) →
    U(−1/√hidden, 1/√hidden).
    """
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise InvalidInputError(f"seed must be a non-negative integer; got {seed!r}")
    dt = as_dtype(dtype)
    rng = np.random.default_rng(int(seed))
    arrays: dict[str, np.ndarray] = {}
    for spec in net.param_specs():
        init = spec.init
        if init == "auto":
            init = "zeros" if spec.role == "bias" else ("he" if spec.activation == "relu" else "glorot")
        if init == "zeros":
            a = np.zeros(spec.shape)
        elif init == "he":
            a = rng.normal(0.0, np.sqrt(2.0 / spec.fan_in), spec.shape)
        elif init == "glorot":
            limit = np.sqrt(6.0 / (spec.fan_in + spec.fan_out))
            a = rng.uniform(-limit, limit, spec.shape)
        elif init == "uniform_hidden":
            limit = 1.0 / np.sqrt(spec.fan_out)
            a = rng.uniform(-limit, limit, spec.shape)
        else:
            raise ParamsError(f"unknown initialiser {init!r} for {spec.key!r}")
        if spec.mask is not None:
            a = a * spec.mask
        arrays[spec.key] = a.astype(dt)
    return Params._adopt(arrays)


def check_params(net, params, dtype=None) -> dict[str, np.ndarray]:
    """Check that params fit the network: same keys, shapes, one float dtype, finite values."""
    if not isinstance(params, Mapping):
        raise ParamsError(f"params must be a mapping of key → array (from net.init); got {type(params).__name__}")
    specs = net.param_specs()
    expected = {s.key for s in specs}
    got = set(params)
    if got != expected:
        missing, extra = sorted(expected - got), sorted(got - expected)
        raise ParamsError(
            "params do not match the network: "
            + (f"missing {missing}" if missing else "")
            + ("; " if missing and extra else "")
            + (f"unexpected {extra}" if extra else "")
        )
    out = {}
    dtypes = set()
    for s in specs:
        a = params[s.key]
        if not isinstance(a, np.ndarray):
            a = np.asarray(a)
        if a.shape != s.shape:
            raise ParamsError(f"param {s.key!r} has shape {a.shape}; the network needs {s.shape}")
        if a.dtype not in (np.float32, np.float64):
            raise ParamsError(f"param {s.key!r} has dtype {a.dtype}; use float32 or float64")
        dtypes.add(a.dtype)
        out[s.key] = a
    if len(dtypes) > 1:
        raise ParamsError("params mix float32 and float64; convert with params.astype(...)")
    if dtype is not None:
        dt = as_dtype(dtype)
        out = {k: v.astype(dt, copy=False) for k, v in out.items()}
    for k, a in out.items():
        if not np.all(np.isfinite(a)):
            raise ParamsError(f"param {k!r} holds NaN or infinity")
    return out


class FlatLayout:
    """Where each param lives in one flat vector: lets optimizers update everything at once."""

    def __init__(self, shapes: Mapping[str, tuple[int, ...]]) -> None:
        self.keys = list(shapes)
        self.shapes = {k: tuple(shapes[k]) for k in self.keys}
        self.offsets = {}
        start = 0
        for k in self.keys:
            n = int(np.prod(self.shapes[k], dtype=np.int64))
            self.offsets[k] = (start, start + n)
            start += n
        self.size = start

    def flatten(self, arrays: Mapping[str, np.ndarray], dtype) -> np.ndarray:
        out = np.empty(self.size, dtype=dtype)
        for k in self.keys:
            a, b = self.offsets[k]
            out[a:b] = np.asarray(arrays[k]).ravel()
        return out

    def views(self, flat: np.ndarray) -> dict[str, np.ndarray]:
        return {k: flat[a:b].reshape(self.shapes[k]) for k, (a, b) in self.offsets.items()}

    def to_params(self, flat: np.ndarray) -> Params:
        return Params._adopt({k: v.copy() for k, v in self.views(flat).items()})
