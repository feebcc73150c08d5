"""Truncated backpropagation through time, against PyTorch references written from the
definitions (not from nomagic's code):

- ``nm.fit(..., tbptt=k)``: each mini-batch cut into chunks of k steps, the hidden state (and the
  LSTM's cell state) carried from chunk to chunk and detached, an optimizer step per chunk; with
  last-step targets the chunks before the last only carry the state;
- ``truncate=k``: the state entering every step t ≤ T − k is detached (``objective.horizon``).

Elman, LSTM and GRU; float64.
"""

from __future__ import annotations

import numpy as np
import pytest

import nomagic as nm

torch = pytest.importorskip("torch")
nn = torch.nn

KINDS = ("recurrent", "lstm", "gru")
TORCH_RNN = {"recurrent": "RNN", "lstm": "LSTM", "gru": "GRU"}


def _net(kind: str, seq: bool, n_in=3, H=4, n_out=2, out="linear"):
    return (nm.inputs(n_in) | getattr(nm, kind)(H, return_sequences=seq, name="rnn")
            | nm.dense(n_out, activation=out, name="head"))


class Ref(nn.Module):
    """The same network in plain PyTorch: nn.RNN/LSTM/GRU then nn.Linear (logits)."""

    def __init__(self, kind: str, seq: bool, n_in=3, H=4, n_out=2):
        super().__init__()
        self.kind, self.seq = kind, seq
        self.rnn = getattr(nn, TORCH_RNN[kind])(n_in, H, batch_first=True)
        self.head = nn.Linear(H, n_out)

    def forward(self, x, h=None):
        out, h = self.rnn(x, h)
        return self.head(out if self.seq else out[:, -1]), h


def _ref(kind, seq, net, params):
    """Ref with nomagic's params. nomagic has one bias per gate where torch has b_ih + b_hh:
    torch's b_hh is held at 0 (its gradient masked), except the GRU's n part, which is b_hn."""
    model = Ref(kind, seq).double()
    model.load_state_dict({k: torch.as_tensor(v).clone()
                           for k, v in nm.to_torch_state_dict(net, params).items()})
    H = model.rnn.hidden_size
    mask = torch.zeros_like(model.rnn.bias_hh_l0)
    if kind == "gru":
        mask[2 * H:] = 1.0
    model.rnn.bias_hh_l0.register_hook(lambda g: g * mask)
    return model


def _params_of(net, model):
    return nm.from_torch_state_dict(net, {k: v.detach().numpy() for k, v in model.state_dict().items()})


def _detach(h):
    return tuple(x.detach() for x in h) if isinstance(h, tuple) else h.detach()


def _torch_tbptt(model, X, Y, *, k, loss, opt, epochs, batch_size, seed):
    """The PyTorch loop of truncated BPTT, as its users write it: per mini-batch, chunks in time
    order, h detached between them, zero_grad/backward/step per chunk. Returns each epoch's loss
    (the mean of the batches' losses weighted by their sizes, a batch's loss being the mean of
    its chunks' losses weighted by their lengths, or the last chunk's for last-step targets)."""
    crit = nn.MSELoss() if loss == "mse" else nn.CrossEntropyLoss()
    n, T = X.shape[:2]
    seq = model.seq
    history = []
    for epoch in range(epochs):
        order = np.random.default_rng([seed, epoch]).permutation(n)
        Xe, Ye = torch.tensor(X[order]), torch.tensor(Y[order])
        total = 0.0
        for s in range(0, n, batch_size):
            xb, yb = Xe[s:s + batch_size], Ye[s:s + batch_size]
            h, batch_loss = None, 0.0
            for a in range(0, T, k):
                b = min(a + k, T)
                if not seq and b < T:
                    with torch.no_grad():
                        _, h = model(xb[:, a:b], h)
                    continue
                out, h_new = model(xb[:, a:b], h)
                if loss == "mse":
                    value = crit(out, yb[:, a:b] if seq else yb)
                else:
                    value = crit(out.reshape(-1, out.shape[-1]), (yb[:, a:b] if seq else yb).reshape(-1))
                opt.zero_grad()
                value.backward()
                opt.step()
                h = _detach(h_new)
                batch_loss += value.item() * (b - a) / T if seq else value.item()
            total += batch_loss * len(xb)
        history.append(total / n)
    return history


def _data(seq, loss, n=10, T=7, n_in=3, n_out=2, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, T, n_in))
    if loss == "mse":
        Y = rng.normal(size=(n, T, n_out) if seq else (n, n_out))
    else:
        Y = rng.integers(0, n_out, size=(n, T) if seq else n)
    return X, Y


OPTS = {"adam": (lambda: nm.adam(0.01), lambda p: torch.optim.Adam(p, lr=0.01)),
        "sgd": (lambda: nm.sgd(0.05, momentum=0.9), lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9))}


@pytest.mark.parametrize("opt_name", sorted(OPTS))
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("seq,loss,k", [(True, "mse", 3), (True, "cross_entropy", 2), (False, "mse", 3),
                                        (False, "cross_entropy", 7)])
def test_tbptt_equals_the_pytorch_loop(kind, seq, loss, k, opt_name):
    out = "softmax" if loss == "cross_entropy" else "linear"
    net = _net(kind, seq, out=out)
    params = net.init(seed=3, dtype="float64")
    X, Y = _data(seq, loss)
    make_nm, make_torch = OPTS[opt_name]
    model = nm.fit(net, X, Y, loss=loss, optimizer=make_nm(), epochs=2, batch_size=4, seed=5, params=params,
                   tbptt=k, verbose=False, fused=True)
    generic = nm.fit(net, X, Y, loss=loss, optimizer=make_nm(), epochs=2, batch_size=4, seed=5, params=params,
                     tbptt=k, verbose=False, fused=False)
    ref = _ref(kind, seq, net, params)
    theirs = _torch_tbptt(ref, X, Y, k=k, loss=loss, opt=make_torch(ref.parameters()), epochs=2, batch_size=4,
                          seed=5)
    expected = _params_of(net, ref)
    for trained in (model, generic):
        for key in expected:
            np.testing.assert_allclose(trained.params[key], expected[key], rtol=0, atol=1e-8, err_msg=key)
        np.testing.assert_allclose([h["loss"] for h in trained.history], theirs, rtol=0, atol=1e-10)


def test_tbptt_steps_once_per_chunk_and_k_equal_to_T_is_plain_training():
    net = _net("lstm", True)
    X, Y = _data(True, "mse", T=7)
    m = nm.fit(net, X, Y, epochs=1, batch_size=4, tbptt=3, dtype="float64", verbose=False)
    assert m.opt_state.step == 3 * 3  # 3 batches × chunks [0,3) [3,6) [6,7)
    last = nm.fit(_net("lstm", False), X, Y[:, -1], epochs=1, batch_size=4, tbptt=3, dtype="float64", verbose=False)
    assert last.opt_state.step == 3  # last-step targets: one step per batch
    a = nm.fit(net, X, Y, epochs=2, batch_size=4, tbptt=7, dtype="float64", verbose=False)
    b = nm.fit(net, X, Y, epochs=2, batch_size=4, dtype="float64", verbose=False)
    for key in a.params:
        np.testing.assert_allclose(a.params[key], b.params[key], rtol=0, atol=1e-14)


def test_tbptt_with_weights_metrics_and_a_checkpoint(tmp_path):
    net = _net("gru", True, out="softmax")
    X, Y = _data(True, "cross_entropy")
    w = np.linspace(0.5, 2.0, len(X))
    kw = dict(loss="cross_entropy", epochs=3, batch_size=4, tbptt=3, dtype="float64", verbose=False,
              sample_weight=w, class_weight={1: 3.0}, validation_split=0.2)
    full = nm.fit(net, X, Y, **kw)
    assert all(0 <= h["accuracy"] <= 1 for h in full.history)
    first = nm.fit(net, X, Y, **{**kw, "epochs": 2}, checkpoint=tmp_path / "c")
    resumed = nm.fit(net, X, Y, **kw, checkpoint=tmp_path / "c")
    assert first.epoch == 2 and resumed.epoch == 3
    for key in full.params:
        assert full.params[key].tobytes() == resumed.params[key].tobytes()


@pytest.mark.parametrize("bad,match", [
    ({"tbptt": 0}, "tbptt must be a positive number"),
    ({"tbptt": 2.5}, "tbptt must be a positive number"),
    ({"tbptt": True}, "tbptt must be a positive number"),
    ({"tbptt": 8}, r"longer than the sequences \(7 steps\)"),
    ({"tbptt": 2, "truncate": 3}, "truncate or tbptt, not both"),
    ({"tbptt": 2, "engine": "processes"}, "tbptt is not supported on the processes engine; use engine='tensor'"),
])
def test_bad_tbptt(bad, match):
    X, Y = _data(True, "mse")
    with pytest.raises(nm.InvalidInputError, match=match):
        nm.fit(_net("recurrent", True), X, Y, epochs=1, verbose=False, **bad)


def test_tbptt_needs_a_recurrent_network():
    with pytest.raises(nm.InvalidInputError, match="no recurrent layer"):
        nm.fit(nm.inputs(3) | nm.dense(2), np.zeros((4, 3)), np.zeros((4, 2)), tbptt=2, verbose=False)


def test_state_is_checked():
    from nomagic.engines.tensor import Trainer

    net = _net("lstm", False)
    p = net.init(seed=0, dtype="float64")
    tr = Trainer(net, p, nm.sgd(0.1), nm.sgd(0.1).init(p), nm.get_loss("mse"))
    X = np.zeros((2, 3, 3))
    with pytest.raises(nm.InvalidInputError, match="no recurrent synapse reads"):
        tr.advance(X, {"head": np.zeros((2, 2))})
    with pytest.raises(nm.InvalidInputError, match=r"must have shape \(2, 4\)"):
        tr.advance(X, {"rnn.c": np.zeros((3, 4))})
    assert sorted(tr.advance(X)) == ["rnn.c", "rnn.h"]


# -- truncate=k, from its definition ---------------------------------------------------------------


def _torch_truncated(model, X, Y, k, loss):
    """Loss and grads (nomagic's layout) with the state entering each step t ≤ T − k detached."""
    T = X.shape[1]
    first = max(T - k, 0)
    x = torch.tensor(X)
    h, outs = None, []
    for t in range(T):
        if h is not None and t <= first:
            h = _detach(h)
        o, h = model.rnn(x[:, t:t + 1], h)
        outs.append(o)
    out = torch.cat(outs, dim=1)
    y_hat = model.head(out if model.seq else out[:, -1])
    y = torch.tensor(Y)
    value = nn.MSELoss()(y_hat, y) if loss == "mse" else \
        nn.CrossEntropyLoss()(y_hat.reshape(-1, y_hat.shape[-1]), y.reshape(-1))
    model.zero_grad()
    value.backward()
    grads = {name: p.grad.detach().clone() for name, p in model.named_parameters()}
    H = model.rnn.hidden_size
    keep = torch.zeros_like(grads["rnn.bias_hh_l0"])  # b_hh is folded into nomagic's one bias
    if model.kind == "gru":
        keep[2 * H:] = 1.0
    grads["rnn.bias_hh_l0"] = grads["rnn.bias_hh_l0"] * keep
    return value.item(), grads


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("seq,loss", [(True, "mse"), (False, "mse"), (True, "cross_entropy"),
                                      (False, "cross_entropy")])
@pytest.mark.parametrize("k", [1, 3, 7, 20])
def test_truncate_equals_its_definition_in_pytorch(kind, seq, loss, k):
    out = "softmax" if loss == "cross_entropy" else "linear"
    net = _net(kind, seq, out=out)
    params = net.init(seed=1, dtype="float64")
    X, Y = _data(seq, loss, n=5)
    ref = _ref(kind, seq, net, params)
    value, tg = _torch_truncated(ref, X, Y, k, loss)
    expected = nm.from_torch_state_dict(net, {key: g.numpy() for key, g in tg.items()})
    for fused in (True, False):
        ours, grads = net.loss_and_grad(params, X, Y, loss=loss, truncate=k, fused=fused)
        assert ours == pytest.approx(value, abs=1e-12)
        for key in expected:
            np.testing.assert_allclose(grads[key], expected[key], rtol=0, atol=1e-10, err_msg=f"{key} fused={fused}")


def test_truncate_with_outputs_at_every_step_is_not_a_single_detach():
    """With a loss at every step, truncate=k is not 'detach once before step T − k': the outputs
    before that step get no gradient through time at all."""
    net = _net("recurrent", True)
    params = net.init(seed=1, dtype="float64")
    X, Y = _data(True, "mse", n=5)
    ref = _ref("recurrent", True, net, params)
    T, k = X.shape[1], 3
    x = torch.tensor(X)
    h, outs = None, []
    for t in range(T):
        if t == T - k:
            h = h.detach()
        o, h = ref.rnn(x[:, t:t + 1], h)
        outs.append(o)
    value = nn.MSELoss()(ref.head(torch.cat(outs, 1)), torch.tensor(Y))
    value.backward()
    _, grads = net.loss_and_grad(params, X, Y, truncate=k)
    assert np.abs(grads["rnn.U"] - ref.rnn.weight_hh_l0.grad.numpy().T).max() > 1e-6
