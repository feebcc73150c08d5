"""Every error nomagic raises on purpose is a ``NomagicError``.

Callers (and the CLI) catch one base class; the subclass and the message say what went wrong
and how to fix it.
"""

from __future__ import annotations


class NomagicError(Exception):
    """Base class of every deliberate nomagic error."""


class InvalidInputError(NomagicError, ValueError):
    """Data given to a public function has the wrong shape, dtype or values."""


class ShapeError(InvalidInputError):
    """An array has the wrong rank or size."""


class NonFiniteError(InvalidInputError):
    """An array holds NaN or infinity."""


class LabelError(InvalidInputError):
    """Class labels are out of range or not integers."""


class EmptyDataError(InvalidInputError):
    """No samples were given."""


class UnknownNameError(NomagicError, KeyError):
    """An activation, loss, optimizer, engine or aggregation name is not known."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class GraphError(NomagicError):
    """A network cannot be built as asked (a cycle, a dangling neuron, a bad layer order)."""


class ParamsError(NomagicError):
    """Params do not match the network (missing, extra or misshapen arrays)."""


class ModelFileError(NomagicError):
    """A model or checkpoint file is truncated, tampered with or of an unknown version."""


class MissingDependencyError(NomagicError, ImportError):
    """An optional dependency (torch, onnx, ray, ...) is needed but not installed."""


class EngineError(NomagicError):
    """An engine failed to run a network (a process crashed too often, a timeout)."""


def require(module: str, extra: str):
    """Import an optional dependency, or raise a clear error naming the extra to install."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(
            f"{module!r} is needed for this; install it with: pip install 'nomagic[{extra}]'"
        ) from exc


class DataFileError(InvalidInputError):
    """A data file (training log, activity file, weather file, export zip) cannot be read.

    The message names the file (and the line, where there is one) and the problem.
    """


class CallbackError(NomagicError):
    """A handler of a training loop (a callback given to ``nm.fit`` or ``nm.Loop``) raised."""
