"""The tour (``nomagic tour``): every chapter runs, and the numbers it prints are the ones an
independent computation gives; the CLI; the notebooks are what the generator makes, and run."""

from __future__ import annotations

import io
import os
import re
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rich")

import nomagic as nm  # noqa: E402
from nomagic import cli  # noqa: E402
from nomagic.apps.tour import all_chapters, run_chapter, run_tour  # noqa: E402
from nomagic.apps.tour.run import make_console  # noqa: E402

NAMES = ["neuron", "perceptron", "xor", "hidden", "backprop", "recurrent", "processes", "bias"]


@pytest.fixture(scope="module")
def ran():
    """Each chapter run once: (its namespace, what it printed as plain text)."""
    out = {}
    for ch in all_chapters():
        buf = io.StringIO()
        ns = run_chapter(ch, make_console(buf, width=160))
        out[ch.name] = (ns, buf.getvalue())
    return out


def _floats(text: str) -> list[float]:
    return [float(x) for x in re.findall(r"-?\d+\.\d+(?:e[-+]\d+)?", text)]


def test_the_chapters_in_order():
    assert [c.name for c in all_chapters()] == NAMES
    assert [c.number for c in all_chapters()] == list(range(1, 9))


def test_neuron(ran):
    ns, text = ran["neuron"]
    w, b = np.array([1.2, -0.8]), -1.0
    for day, x in ns["days"].items():
        want = 1 / (1 + np.exp(-(w @ np.array(x) + b)))
        line = next(ln for ln in text.splitlines() if ln.lstrip("│ ").startswith(day))
        assert f"σ(z) = {want:.3f}" in line and line.count(f"{want:.3f}") == 2, line
    assert "yes" in text and "no" in text


def test_perceptron_epochs_match_an_independent_rule(ran):
    ns, text = ran["perceptron"]
    X, y = ns["X_train"], ns["y_train"]
    w, b = np.zeros(X.shape[1]), 0.0
    rng = np.random.default_rng(0)
    for e in ns["epochs"]:
        mistakes = 0
        for i in rng.permutation(len(X)):
            guess = 1.0 if X[i] @ w + b >= 0 else 0.0
            if guess != y[i]:
                w, b, mistakes = w + (y[i] - guess) * X[i], b + (y[i] - guess), mistakes + 1
        assert e["mistakes"] == mistakes >= 1
        test_acc = float(np.mean((ns["X_test"] @ w + b >= 0) == ns["y_test"]))
        assert e["test"] == pytest.approx(test_acc)
        assert re.search(rf"│ {e['epoch']} +│ {mistakes} +│ {e['train']:.3f} +│ {test_acc:.3f} ", text)
    assert "perceptron after the last epoch" in text and f"{ns['final']['test']:.3f}" in text
    assert f"{float(np.mean(ns['y_test'] == 1)):.3f}" in text  # the majority baseline


def test_xor_the_perceptron_never_stops_making_mistakes(ran):
    ns, text = ran["xor"]
    assert len(ns["history"]) == 20 and all(m >= 1 for _, m, _, _ in ns["history"])
    assert "epochs without a mistake: 0 of 20" in text
    assert "the best one gets 3 of 4 cases right" in text


def test_hidden_layer_learns_xor(ran):
    ns, text = ran["hidden"]
    X, P = ns["X"], ns["model"].params
    hidden = np.tanh(X @ P["hidden.weight"] + P["hidden.bias"])
    out = 1 / (1 + np.exp(-(hidden @ P["out.weight"] + P["out.bias"])))[:, 0]
    assert np.allclose(ns["hidden"], hidden) and np.allclose(ns["p"], out)
    assert np.array_equal(out >= 0.5, ns["y"] == 1)
    assert "right on 4 of 4 cases" in text


def test_backprop_gradients_equal_finite_differences(ran):
    ns, text = ran["backprop"]
    x, t, params = ns["x"], ns["target"], ns["params"]

    def loss(p):
        a1 = 1 / (1 + np.exp(-(x @ p["h.weight"] + p["h.bias"])))
        a2 = 1 / (1 + np.exp(-(a1 @ p["out.weight"] + p["out.bias"])))
        return float(np.sum((a2 - t) ** 2))

    eps = 1e-6
    for k, g in ns["by_hand"].items():
        numeric = np.zeros_like(params[k])
        for i in np.ndindex(params[k].shape):
            up = {n: np.array(v) for n, v in params.items()}
            down = {n: np.array(v) for n, v in params.items()}
            up[k][i] += eps
            down[k][i] -= eps
            numeric[i] = (loss(up) - loss(down)) / (2 * eps)
        assert np.allclose(g, numeric, atol=1e-9), k
        assert np.allclose(ns["grads"][k], numeric, atol=1e-9), k
        assert ("[" + ", ".join(f"{v:.6f}" for v in numeric.ravel()) + "]") in text
    assert ns["max_difference"] < 1e-12
    assert f"loss:    (a₂ − t)² = ({ns['a2'][0]:.4f} − 0.01)² = {loss(params):.6f}" in text
    assert ns["loss_after"] < ns["engine_loss"]


def test_recurrent_hidden_states_step_by_step(ran):
    ns, text = ran["recurrent"]
    P = ns["model"].params
    h, states = np.zeros(4), []
    for x_t in ns["week"]:
        h = np.tanh(x_t @ P["h.W"] + h @ P["h.U"] + P["h.b"])
        states.append(h)
    assert np.allclose(ns["states"], states, atol=1e-12)
    for t, s in enumerate(states):
        assert ("[" + ", ".join(f"{v:.2f}" for v in s) + "]") in text, t
    assert re.search(r"largest difference between the engine's hidden states and the loop: \d\.\de-(1[2-9]|[2-9]\d)|"
                     r"loop: 0\.0e\+00", text)


def test_processes_trace_and_a_crash_changing_nothing(ran):
    ns, text = ran["processes"]
    assert ns["max_difference"] == 0.0 and ns["crash"].times == 0
    assert "largest difference from the undisturbed run: 0.0\n" in text
    lines = ns["lines"]
    forward = [ln for ln in lines[:20] if re.match(r"^sensor x\[\d\] -> neuron h1\[\d\]: forward \[", ln)]
    assert len(forward) == 6  # 2 sensors x 3 hidden neurons
    assert all(ln in text for ln in lines[:20])


def test_bias_chapter_shows_the_failure_and_the_audit_warns(ran):
    ns, text = ran["bias"]
    acc = ns["accuracy"]
    assert acc["summer only"] < acc["all seasons"]
    assert f"{acc['summer only']:.3f}" in text and f"{acc['all seasons']:.3f}" in text
    warnings = ns["report"].warnings
    assert any("colder than anything the model learned from" in w for w in warnings)
    assert "winter days; the training data has none" in text.replace("\n", " ")
    assert f"{len(warnings)} warnings:" in text


# --- the command ----------------------------------------------------------------------------------

def test_cli_list(capsys):
    assert cli.main(["tour", "--list"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [ln.split()[1] for ln in out] == NAMES
    assert out[2].split()[0] == "3" and "cannot learn" in out[2]


@pytest.mark.parametrize("key", ["nine", "0", "9"])
def test_cli_unknown_chapter_is_one_line_exit_2(capsys, key):
    assert cli.main(["tour", key]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("nomagic: error: no chapter") and "xor" in err


def test_cli_runs_one_chapter_by_name_or_number_without_pausing(capsys, monkeypatch):
    monkeypatch.setattr("builtins.input", lambda *a: pytest.fail("paused"))
    assert cli.main(["tour", "xor", "--no-pause"]) == 0
    out = capsys.readouterr().out
    assert "Chapter 3: What one neuron cannot learn" in out and "\x1b[" not in out  # plain text off a terminal
    assert "nm.perceptron_epoch(params, X, y)" in out  # the code is shown


def test_no_pause_when_stdin_is_not_a_terminal(monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    monkeypatch.setattr("builtins.input", lambda *a: pytest.fail("paused"))
    buf = io.StringIO()
    assert run_tour(["1", "neuron"], pause=True, con=make_console(buf)) == 0
    assert buf.getvalue().count("Chapter 1: One neuron") == 2


def test_pause_between_chapters_on_a_terminal(monkeypatch):
    class Tty(io.StringIO):
        def isatty(self):
            return True

    asked = []
    monkeypatch.setattr(sys, "stdin", Tty(""))
    monkeypatch.setattr("builtins.input", lambda prompt="": asked.append(prompt) or "")
    buf = io.StringIO()
    run_tour(["neuron", "neuron"], con=make_console(buf))
    assert len(asked) == 1 and "chapter 1" in asked[0]


def test_without_rich_the_command_says_what_to_install(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "rich", None)
    assert cli.main(["tour", "1", "--no-pause"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install 'nomagic[tour]'" in err


# --- the notebooks --------------------------------------------------------------------------------

def test_committed_notebooks_are_what_the_generator_makes():
    pytest.importorskip("nbformat")
    from nomagic.apps.tour import make_notebooks

    assert make_notebooks.stale() == [], "run: python -m nomagic.apps.tour.make_notebooks"
    assert len(list(make_notebooks.NOTEBOOK_DIR.glob("*.ipynb"))) == len(NAMES)


def test_notebooks_run_without_errors(tmp_path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    from nomagic.apps.tour.make_notebooks import NOTEBOOK_DIR

    # the kernel imports the very nomagic under test (not some other installed copy)
    here = str(Path(nm.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH")) if p)}
    for path in sorted(NOTEBOOK_DIR.glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        client = nbclient.NotebookClient(nb, timeout=120, kernel_name="python3",
                                         resources={"metadata": {"path": str(tmp_path)}})
        client.execute(env=env)  # raises CellExecutionError on the first cell that fails
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert code and all(o.get("output_type") != "error" for c in code for o in c.get("outputs", []))
        assert any(c.get("outputs") for c in code), path.name  # the chapter showed something
