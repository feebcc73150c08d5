"""The gate table of the gated recurrent cells: names, order and activation of each gate.

The order is PyTorch's (and ONNX's LSTM/GRU stacking follows from it): the cell builders, the
fused kernels, torch conversion and ONNX export all read it from here.

LSTM:  i = σ(x·W_i + h₋₁·U_i + b_i)  f = σ(…_f)  g = tanh(…_g)  o = σ(…_o)
GRU:   r = σ(x·W_r + h₋₁·U_r + b_r)  z = σ(…_z)  n = tanh(x·W_n + b_n + r ⊙ (h₋₁·U_n + b_hn))
"""

from __future__ import annotations

#: gate name -> activation, in PyTorch's stacking order
LSTM_GATES: tuple[tuple[str, str], ...] = (("i", "sigmoid"), ("f", "sigmoid"), ("g", "tanh"), ("o", "sigmoid"))
GRU_GATES: tuple[tuple[str, str], ...] = (("r", "sigmoid"), ("z", "sigmoid"), ("n", "tanh"))

#: layer kind -> gate names in order ("recurrent" has a single h)
GATES: dict[str, tuple[str, ...]] = {"lstm": tuple(g for g, _ in LSTM_GATES),
                                     "gru": tuple(g for g, _ in GRU_GATES)}


def sigmoid_first(kind: str) -> tuple[str, ...]:
    """The gates with the sigmoid ones first (LSTM: i, f, o, g): the fused kernels treat the
    sigmoid gates as one slice."""
    table = LSTM_GATES if kind == "lstm" else GRU_GATES
    return tuple(g for g, a in table if a == "sigmoid") + tuple(g for g, a in table if a != "sigmoid")
