"""Trained planner models, kept in the user's cache folder so that a second ``nomagic plan`` on
the same data answers at once.

The folder is ``$NOMAGIC_CACHE_DIR``, else ``$XDG_CACHE_HOME/nomagic``, else
``~/.cache/nomagic``. An entry is named by a fingerprint of everything the models depend on —
the activities of the log, the weather of its days, the load settings, the training options and
nomagic's version — so changing any of them trains anew. An entry is a folder of nomagic model
files (data only, checksummed), written in a temporary folder and renamed into place, so a
killed run leaves no half-written entry. A damaged entry is rebuilt, with a warning.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

import nomagic as nm
from nomagic.errors import NomagicError
from nomagic.version import __version__

from .dataset import PlannerData
from .features import Scaler
from .models import MODELS, PlannerModel, TrainOptions

CACHE_ENV = "NOMAGIC_CACHE_DIR"
KINDS = tuple(f"{k}{suffix}" for k in MODELS for suffix in ("", "-holdout"))


def cache_root() -> Path:
    """Where the planner keeps trained models."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "nomagic"


def fingerprint(data: PlannerData, options: TrainOptions, extra: dict | None = None) -> str:
    """A hash of what the trained models depend on."""
    h = hashlib.sha256()
    h.update(json.dumps({"version": __version__, "options": repr(options), "settings": repr(data.settings),
                         "extra": extra or {}}, sort_keys=True).encode())
    for a in data.log.activities:
        h.update(repr((a.date, a.sport, a.kind, a.name, a.duration_s, a.moving_s, a.distance_m, a.avg_hr, a.max_hr,
                       a.rpe)).encode())
    w = data.weather
    for col in (w.temp_max, w.temp_min, w.precipitation, w.wind, w.snow):
        h.update(np.ascontiguousarray(col, dtype=np.float64).tobytes())
    h.update("\n".join(map(str, w.condition)).encode())
    return h.hexdigest()[:32]


def _save_model(pm: PlannerModel, path: Path) -> None:
    info = dict(pm.model.info)
    info["planner"] = {"kind": pm.kind, "scaler": pm.scaler.to_json()}
    nm.Model(pm.model.net, pm.model.params, pm.model.history, pm.model.loss, info).save(path)


def _load_model(path: Path, options: TrainOptions) -> PlannerModel:
    model = nm.load(path)
    meta = model.info.get("planner")
    if not isinstance(meta, dict) or meta.get("kind") not in MODELS:
        raise NomagicError(f"{path} is not a planner model")
    try:
        scaler = Scaler.from_json(meta["scaler"])
    except (KeyError, TypeError, ValueError) as exc:
        raise NomagicError(f"{path}: its input scaling is malformed ({exc!r})") from None
    return PlannerModel(meta["kind"], model, scaler, options)


def load(key: str, options: TrainOptions) -> tuple[dict[str, PlannerModel] | None, str | None]:
    """The cached models for ``key`` (None when there are none), and a warning when the entry
    was damaged (it is then removed)."""
    folder = cache_root() / f"planner-{key}"
    if not folder.is_dir():
        return None, None
    try:
        return {k: _load_model(folder / f"{k}.nomagic", options) for k in KINDS}, None
    except (NomagicError, OSError, ValueError) as exc:
        shutil.rmtree(folder, ignore_errors=True)
        return None, f"the cached models in {folder} were damaged ({exc}); training them again"


def save(key: str, models: dict[str, PlannerModel]) -> Path | None:
    """Write the models under ``key`` atomically; returns the folder (None if the cache folder
    cannot be written: the plan still runs, it is only slower next time)."""
    root = cache_root()
    final = root / f"planner-{key}"
    try:
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".planner-", dir=root))
    except OSError:
        return None
    try:
        for k, pm in models.items():
            _save_model(pm, tmp / f"{k}.nomagic")
        if final.exists():
            shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        return final
    except OSError:
        return None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
