"""Checks of user data shared by every public entry point: clear errors, never a crash later."""

from __future__ import annotations

import numpy as np

from ..errors import EmptyDataError, InvalidInputError, NonFiniteError, ShapeError


def check_inputs(net, X, dtype) -> np.ndarray:
    """X as a float array of the right rank and width for ``net``; raises on anything else."""
    try:
        X = np.asarray(X)
    except (ValueError, TypeError):  # ragged lists and the like
        raise ShapeError("inputs are ragged (rows or sequences of different lengths); pad them "
                         "to one length") from None
    if X.dtype == object:
        raise ShapeError("inputs are ragged (rows or sequences of different lengths); pad them "
                         "to one length")
    if not (np.issubdtype(X.dtype, np.number) or X.dtype == np.bool_) or np.iscomplexobj(X):
        raise InvalidInputError(f"inputs must be real numbers; got dtype {X.dtype}")
    want = 3 if net.is_recurrent else 2
    if X.ndim == 1 and not net.is_recurrent and net.n_inputs == X.shape[0]:
        raise ShapeError(
            f"inputs must be 2-D (batch, {net.n_inputs}); got one sample of shape {X.shape}: "
            "use X[None, :] for a batch of one"
        )
    if X.ndim != want:
        layout = "(batch, time, features)" if want == 3 else "(batch, features)"
        hint = (" — a recurrent network reads sequences" if want == 3 else
                " — this network has no recurrent layer")
        raise ShapeError(f"inputs must be {want}-D {layout}; got shape {X.shape}{hint}")
    if X.shape[0] == 0:
        raise EmptyDataError("no samples: the inputs have batch size 0")
    if want == 3 and X.shape[1] == 0:
        raise EmptyDataError("sequences of length 0: nothing to read")
    if X.shape[-1] != net.n_inputs:
        raise ShapeError(f"the network has {net.n_inputs} inputs; the data has {X.shape[-1]} "
                         f"features (shape {X.shape})")
    X = X.astype(dtype, copy=False)
    if not np.all(np.isfinite(X)):
        raise NonFiniteError("inputs hold NaN or infinity; clean or impute them first")
    return X


def check_targets(net, loss, Y, X, dtype) -> np.ndarray:
    """Targets shaped like the network's output for ``X`` (class indices become one-hot)."""
    try:
        Y = np.asarray(Y)
    except (ValueError, TypeError):
        raise ShapeError("targets are ragged (rows of different lengths); pad them to one length") from None
    if Y.dtype == object:
        raise ShapeError("targets are ragged; pad them to one length")
    if not (np.issubdtype(Y.dtype, np.number) or Y.dtype == np.bool_) or np.iscomplexobj(Y):
        raise InvalidInputError(f"targets must be real numbers; got dtype {Y.dtype}")
    if Y.ndim >= 1 and Y.shape[0] == 0:
        raise EmptyDataError("no targets: batch size 0")
    if Y.ndim == 0 or Y.shape[0] != X.shape[0]:
        raise ShapeError(f"{X.shape[0]} input samples but targets of shape {Y.shape}: "
                         "one target per sample is needed")
    if np.issubdtype(Y.dtype, np.floating) and not np.all(np.isfinite(Y)):
        raise NonFiniteError("targets hold NaN or infinity; clean them first")
    Y = loss.targets(Y, net.n_outputs, dtype)
    lead = X.shape[:2] if net.returns_sequences else X.shape[:1]
    if Y.shape[:-1] != lead:
        raise ShapeError(f"targets must have shape {lead + (net.n_outputs,)} (or class indices "
                         f"of shape {lead}); got {Y.shape}")
    return Y
