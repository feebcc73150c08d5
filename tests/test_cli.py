"""The command line: real runs in a subprocess, one clear error line, never a traceback."""

import subprocess
import sys

import pytest


def run(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "nomagic.cli", *args], capture_output=True,
                          text=True, timeout=timeout)


def test_help_lists_commands():
    out = run("--help")
    assert out.returncode == 0
    assert "digits" in out.stdout and "bench" in out.stdout


def test_digits_trains_saves_and_draws(tmp_path):
    pytest.importorskip("sklearn")
    model_file, plot_file = tmp_path / "d.nomagic", tmp_path / "loss.svg"
    out = run("digits", "--epochs", "3", "--save", str(model_file), "--plot", str(plot_file))
    assert out.returncode == 0, out.stderr
    accuracy = float(out.stdout.split("test accuracy ")[1].split()[0])
    assert 0.8 < accuracy <= 1.0
    import nomagic as nm

    model = nm.load(model_file)
    assert len(model.history) == 3
    text = plot_file.read_text()
    assert "<svg" in text and text.rstrip().endswith("</svg>")


@pytest.mark.parametrize("args, fragment", [
    (["digits", "--epochs", "0"], "epochs"),
    (["digits", "--engine", "warp"], "unknown engine"),
    (["digits", "--epochs", "1", "--save", "/nonexistent-dir/x.nomagic"], "does not exist"),
    (["digits", "--epochs", "many"], "invalid int value"),
    (["frobnicate"], "invalid choice"),
    (["digits", "--epochs", "1", "--plot", "loss.jpg"], ".png or .svg"),
])
def test_errors_are_one_line_without_traceback(args, fragment):
    out = run(*args)
    assert out.returncode != 0
    assert "Traceback" not in out.stderr
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and fragment in lines[0]
