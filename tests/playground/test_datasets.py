"""The playground's data sets: seeded, on TF Playground's square, the right labels."""

from __future__ import annotations

import numpy as np
import pytest

from nomagic.apps.playground import datasets as ds
from nomagic.errors import InvalidInputError


@pytest.mark.parametrize("name", [n for n in ds.DATASETS if n != "csv"])
def test_seeded_and_labelled(name):
    a, b = ds.generate(name, 300, 10, seed=4), ds.generate(name, 300, 10, seed=4)
    assert np.array_equal(a.X, b.X) and np.array_equal(a.y, b.y)
    assert not np.array_equal(a.X, ds.generate(name, 300, 10, seed=5).X)
    assert a.X.shape == (300, 2) and np.isfinite(a.X).all()
    if a.problem == "classification" and a.n_classes == 2:
        assert set(np.unique(a.y)) == {-1.0, 1.0}
    if name == "blobs":
        assert set(np.unique(a.y)) == {0.0, 1.0, 2.0}


def test_noise_free_xor_and_circle_labels_follow_the_rule():
    d = ds.generate("xor", 400, 0, seed=0)
    assert np.all(np.sign(d.X[:, 0] * d.X[:, 1]) == d.y)
    d = ds.generate("circle", 400, 0, seed=0)
    assert np.all((np.hypot(d.X[:, 0], d.X[:, 1]) < 3) == (d.y > 0))


def test_split_and_features():
    tr, te = ds.split(500, 70, seed=1)
    assert len(tr) == 350 and len(te) == 150 and not set(tr) & set(te)
    F = ds.features(np.array([[2.0, -3.0]]), ["x1", "x2", "x1sq", "x2sq", "x1x2", "sinx1", "sinx2"])
    assert np.allclose(F, [[2, -3, 4, 9, -6, np.sin(2), np.sin(-3)]])


def test_csv_kinds_and_errors():
    assert ds.parse_csv("a,b,c\n0,0,0\n1,1,1\n2,2,0\n3,3,1\n").n_classes == 2
    assert ds.parse_csv("0,0,0\n1,1,1\n2,2,2\n3,3,1\n").n_classes == 3
    assert ds.parse_csv("0,0,0.5\n1,1,1.5\n2,2,2\n3,3,1\n").problem == "regression"
    with pytest.raises(InvalidInputError, match="line 3"):
        ds.parse_csv("0,0,0\n1,1,1\n1,x,1\n")
