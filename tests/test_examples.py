"""The examples run and do what they claim."""

from __future__ import annotations

import importlib.util
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def load_example(name: str):
    """Import ``examples/<name>.py`` as a module (examples are scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_forecast_beats_persistence(capsys):
    example = load_example("forecast_temperature")
    result = example.main(epochs=20, verbose=True)
    assert result["test_days"] == 365 and result["train_windows"] == 1089
    assert result["model_mae"] < result["persistence_mae"]
    out = capsys.readouterr().out
    assert "persistence" in out and "MAE" in out
