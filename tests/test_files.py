"""Model files: ``Model.save`` / ``nm.load`` round trips, the safetensors format both ways,
atomic writes, and damaged or forged files (each a ``ModelFileError``; loading never runs code).
"""

from __future__ import annotations

import json
import os
import pickle
import struct

import numpy as np
import pytest

import nomagic as nm
from nomagic.io import model_file as files
from nomagic.io import safetensors as st


def _graph_net() -> nm.Network:
    g = nm.GraphBuilder(3)
    x = g.inputs
    h1 = g.neuron([x[0], x[1]], activation="tanh")
    h2 = g.neuron([x[1], x[2], h1], activation="relu")
    p = g.neuron([h1, h2], activation="linear", aggregation="product")
    y = g.neuron([h1, h2, p, x[0]], activation="sigmoid")
    return g.build(outputs=[y, h2])


NETS = {
    "mlp": (lambda: nm.inputs(4) | nm.dense(6, activation="tanh") | nm.dense(3, activation="softmax"), (7, 4)),
    "graph": (lambda: _graph_net(), (7, 3)),
    "elman": (lambda: nm.inputs(4) | nm.recurrent(5) | nm.dense(2), (3, 6, 4)),
    "lstm": (lambda: nm.inputs(4) | nm.lstm(5, return_sequences=True) | nm.dense(2), (3, 6, 4)),
    "gru": (lambda: nm.inputs(4) | nm.gru(5) | nm.dense(1, activation="sigmoid"), (3, 6, 4)),
}


def _random_params(net: nm.Network, dtype: str, seed: int = 0) -> nm.Params:
    r = np.random.default_rng(seed)
    out = {}
    for spec in net.param_specs():
        a = r.normal(0.0, 0.5, spec.shape)
        out[spec.key] = (a * spec.mask if spec.mask is not None else a).astype(dtype)
    return nm.Params(out)


def _small_model(dtype: str = "float32") -> nm.Model:
    net = nm.inputs(3) | nm.dense(4, activation="tanh") | nm.dense(2)
    return nm.Model(net, _random_params(net, dtype), [{"epoch": 1, "loss": 0.5}], "mse", {"note": "x"})


def _listing(path) -> list[str]:
    return sorted(os.listdir(path))


# -- round trips ----------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("kind", sorted(NETS))
def test_save_load_predict_identical(kind, dtype, tmp_path, rng):
    build, shape = NETS[kind]
    net = build()
    model = nm.Model(net, _random_params(net, dtype), [{"epoch": 1, "loss": 0.25}], "mse",
                     {"optimizer": {"name": "adam"}})
    path = tmp_path / f"{kind}.nomagic"
    model.save(path)
    loaded = nm.load(path)
    assert loaded.net == net
    assert loaded.loss == "mse" and loaded.history == model.history and loaded.info == model.info
    assert set(loaded.params) == set(model.params)
    for k in model.params:
        assert loaded.params[k].dtype == np.dtype(dtype)
        np.testing.assert_array_equal(loaded.params[k], model.params[k])
        assert not loaded.params[k].flags.writeable
    X = rng.normal(size=shape).astype(dtype)
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))


def test_fitted_model_round_trip(tmp_path, rng):
    X = rng.normal(size=(30, 2))
    y = (X[:, 0] > X[:, 1]).astype(int)
    model = nm.fit(nm.inputs(2) | nm.dense(4, activation="relu") | nm.dense(2, activation="softmax"),
                   X, y, loss="cross_entropy", epochs=2, batch_size=10, seed=1, dtype="float64")
    model.save(tmp_path / "m.nomagic")
    loaded = nm.load(str(tmp_path / "m.nomagic"))  # str or Path
    assert loaded.loss == "cross_entropy"
    assert loaded.history == model.history
    assert loaded.evaluate(X, y) == model.evaluate(X, y)
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))


def test_save_overwrites_and_save_needs_a_model(tmp_path):
    path = tmp_path / "m.nomagic"
    a, b = _small_model(), _small_model("float64")
    a.save(path)
    b.save(path)
    assert nm.load(path).params.dtype == np.float64
    assert _listing(tmp_path) == ["m.nomagic"]
    with pytest.raises(nm.NomagicError, match="Model"):
        files.save({"w": np.zeros(1)}, path)
    with pytest.raises(nm.InvalidInputError, match="directory"):
        a.save(tmp_path)
    with pytest.raises(nm.InvalidInputError, match="does not exist"):
        a.save(tmp_path / "missing" / "m.nomagic")


# -- the safetensors format, both ways -------------------------------------------------------------


def test_our_model_file_reads_with_the_real_safetensors(tmp_path):
    safetensors_numpy = pytest.importorskip("safetensors.numpy")
    from safetensors import safe_open

    model = _small_model("float64")
    path = tmp_path / "m.nomagic"
    model.save(path)
    tensors = safetensors_numpy.load_file(str(path))
    assert set(tensors) == set(model.params)
    for k, v in tensors.items():
        assert v.dtype == np.float64
        np.testing.assert_array_equal(v, model.params[k])
    with safe_open(str(path), framework="numpy") as f:
        meta = f.metadata()
    assert meta["format"] == "nomagic-model" and meta["version"] == files.VERSION
    assert nm.Network.from_dict(json.loads(meta["network"])) == model.net


def test_many_dtypes_both_ways(tmp_path):
    safetensors_numpy = pytest.importorskip("safetensors.numpy")
    r = np.random.default_rng(0)
    tensors = {
        "f32": r.normal(size=(3, 4)).astype(np.float32),
        "f64": r.normal(size=(5,)).astype(np.float64),
        "f16": r.normal(size=(2, 2)).astype(np.float16),
        "i64": r.integers(-9, 9, size=(2, 3)).astype(np.int64),
        "i32": r.integers(-9, 9, size=(4,)).astype(np.int32),
        "u8": r.integers(0, 255, size=(6,)).astype(np.uint8),
        "bool": r.integers(0, 2, size=(3,)).astype(bool),
        "scalar": np.array(1.5, dtype=np.float32),
        "empty": np.zeros((0, 3), dtype=np.float32),
    }
    meta = {"a": "1", "b": "ünïcode ✓"}
    # theirs → ours
    theirs = tmp_path / "theirs.safetensors"
    safetensors_numpy.save_file(tensors, str(theirs), metadata=meta)
    got, got_meta = st.load_file(theirs)
    assert got_meta == meta
    assert set(got) == set(tensors)
    for k, v in tensors.items():
        assert got[k].dtype == v.dtype and got[k].shape == v.shape
        np.testing.assert_array_equal(got[k], v)
    # ours → theirs
    ours = tmp_path / "ours.safetensors"
    st.save_file(ours, tensors, meta)
    back = safetensors_numpy.load_file(str(ours))
    for k, v in tensors.items():
        assert back[k].dtype == v.dtype and back[k].shape == v.shape
        np.testing.assert_array_equal(back[k], v)


def test_model_written_by_the_real_safetensors_loads(tmp_path, rng):
    """A model file is plain safetensors: rewriting it with the reference writer changes nothing."""
    safetensors_numpy = pytest.importorskip("safetensors.numpy")
    model = _small_model()
    path = tmp_path / "m.nomagic"
    model.save(path)
    tensors, meta = st.load_file(path)
    safetensors_numpy.save_file(tensors, str(tmp_path / "ref.nomagic"), metadata=meta)
    loaded = nm.load(tmp_path / "ref.nomagic")
    X = rng.normal(size=(4, 3)).astype(np.float32)
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))


def test_layout_matches_the_specification(tmp_path):
    data = st.dumps({"b": np.arange(3, dtype=np.float32), "a": np.ones((2, 2))}, {"k": "v"})
    (n,) = struct.unpack("<Q", data[:8])
    assert (8 + n) % 8 == 0  # header padded so that the data starts aligned
    header = json.loads(data[8:8 + n])
    assert header["__metadata__"] == {"k": "v"}
    assert header["a"] == {"dtype": "F64", "shape": [2, 2], "data_offsets": [0, 32]}
    assert header["b"] == {"dtype": "F32", "shape": [3], "data_offsets": [32, 44]}
    assert len(data) == 8 + n + 44
    with pytest.raises(nm.InvalidInputError, match="dtype"):
        st.dumps({"c": np.array([1 + 2j])})


# -- atomic writes ---------------------------------------------------------------------------------


def test_failed_write_leaves_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "m.nomagic"
    _small_model().save(path)
    before = path.read_bytes()

    def broken_replace(src, dst):
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="simulated"):
        _small_model("float64").save(path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert _listing(tmp_path) == ["m.nomagic"]  # the temporary file is gone
    assert nm.load(path).params.dtype == np.float32


def test_interrupted_write_leaves_the_old_file(tmp_path, monkeypatch):
    """A crash while the bytes are written (here: a KeyboardInterrupt) changes nothing either."""
    path = tmp_path / "m.nomagic"
    _small_model().save(path)
    before = path.read_bytes()
    real_fsync = os.fsync

    def interrupted(fd):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _small_model("float64").save(path)
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert path.read_bytes() == before
    assert _listing(tmp_path) == ["m.nomagic"]


def test_new_file_is_complete_or_absent(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "replace", lambda src, dst: (_ for _ in ()).throw(OSError("no")))
    with pytest.raises(OSError):
        _small_model().save(tmp_path / "new.nomagic")
    assert _listing(tmp_path) == []


# -- damaged, tampered and forged files ---------------------------------------------------------------


@pytest.fixture
def saved(tmp_path):
    """(path, bytes) of a small saved model in its own directory."""
    d = tmp_path / "files"
    d.mkdir()
    path = d / "m.nomagic"
    _small_model().save(path)
    return path, path.read_bytes()


def _load_fails(path, match: str | None = None) -> nm.ModelFileError:
    before = _listing(path.parent) if path.parent.exists() else None
    with pytest.raises(nm.ModelFileError, match=match) as info:
        nm.load(path)
    if before is not None:
        assert _listing(path.parent) == before  # a failed load writes nothing
    return info.value


def _rewrite(path, tensors, meta, fix_checksum: bool) -> None:
    """Write a forged model file (optionally with a checksum that matches the forgery)."""
    meta = dict(meta)
    if fix_checksum:
        meta["checksum"] = files._checksum(meta, tensors)
    path.write_bytes(st.dumps(tensors, meta))


def test_truncated_at_every_sampled_cut(saved):
    path, data = saved
    cuts = set(range(0, 24)) | set(range(0, len(data), 7)) | set(range(len(data) - 24, len(data)))
    (n,) = struct.unpack("<Q", data[:8])
    cuts |= set(range(8 + n - 4, 8 + n + 5))  # around the end of the header
    cut_path = path.with_name("cut.nomagic")
    for cut in sorted(c for c in cuts if 0 <= c < len(data)):
        cut_path.write_bytes(data[:cut])
        _load_fails(cut_path)


def test_every_flipped_byte_is_caught(saved):
    """Flip each byte of a small file in turn: the header, the metadata and the tensors."""
    path, data = saved
    assert len(data) < 4000
    bad = path.with_name("flipped.nomagic")
    for i in range(len(data)):
        b = bytearray(data)
        b[i] ^= 0xFF
        bad.write_bytes(bytes(b))
        _load_fails(bad)


def test_flipped_tensor_byte_fails_the_checksum(saved):
    path, data = saved
    b = bytearray(data)
    b[-3] ^= 0x01  # a low bit of the last weight: still a finite float
    path.write_bytes(bytes(b))
    _load_fails(path, "checksum")


def test_edited_metadata_fails_the_checksum(saved):
    path, data = saved
    assert b'\\"tanh\\"' in data
    path.write_bytes(data.replace(b'\\"tanh\\"', b'\\"relu\\"', 1))  # same length, still valid JSON
    _load_fails(path, "checksum")
    tensors, meta = st.load_file(path)
    for key, value in (("loss", "cross_entropy"), ("history", "[]"), ("info", "{}"),
                       ("network", meta["network"].replace("tanh", "sigmoid"))):
        _rewrite(path, tensors, {**meta, key: value}, fix_checksum=False)
        _load_fails(path, "checksum")


def test_malformed_metadata_with_a_matching_checksum(saved):
    path, data = saved
    tensors, meta = st.load_file(path)
    for key, value in (("network", "{not json"), ("network", "[]"), ("network", '{"populations": []}'),
                       ("loss", "no_such_loss"), ("history", '{"a": 1}'), ("history", "[1, 2]"),
                       ("info", "[]"), ("network", "[" * 100000 + "]" * 100000)):
        _rewrite(path, tensors, {**meta, key: value}, fix_checksum=True)
        _load_fails(path, "malformed")


def test_missing_extra_and_misshapen_tensors(saved):
    path, data = saved
    tensors, meta = st.load_file(path)
    key = "dense_0.weight"
    cases = {
        "missing": {k: v for k, v in tensors.items() if k != key},
        "extra": {**tensors, "stowaway": np.zeros(3, dtype=np.float32)},
        "shape": {**tensors, key: np.zeros((4, 3), dtype=np.float32)},
        "dtype": {**tensors, key: tensors[key].astype(np.float64)},
        "ints": {**tensors, key: tensors[key].astype(np.int32)},
        "nan": {**tensors, key: np.full_like(tensors[key], np.nan)},
    }
    messages = {"missing": "missing tensors", "extra": "extra tensors", "shape": "shape",
                "dtype": "float32 or all float64", "ints": "float32 or all float64", "nan": "NaN"}
    for name, forged in cases.items():
        _rewrite(path, forged, meta, fix_checksum=False)  # a plain edit: the checksum catches it
        _load_fails(path, "checksum")
        _rewrite(path, forged, meta, fix_checksum=True)  # a careful forgery: the checks catch it
        _load_fails(path, messages[name])


def test_wrong_version_and_wrong_format(saved):
    path, data = saved
    tensors, meta = st.load_file(path)
    for version in ("2", "0", ""):
        _rewrite(path, tensors, {**meta, "version": version}, fix_checksum=True)
        _load_fails(path, "version")
    _rewrite(path, tensors, {k: v for k, v in meta.items() if k != "version"}, fix_checksum=True)
    _load_fails(path, "version")
    _rewrite(path, tensors, {**meta, "format": "something-else"}, fix_checksum=True)
    _load_fails(path, "not a nomagic model")
    _rewrite(path, tensors, {}, fix_checksum=False)  # a valid safetensors file, not a model
    _load_fails(path, "not a nomagic model")


def test_not_a_model_at_all(tmp_path):
    cases = {
        "empty.nomagic": b"",
        "text.nomagic": b"hello, this is not a model\n" * 10,
        "json.nomagic": json.dumps({"populations": []}).encode(),
        "random.nomagic": np.random.default_rng(0).bytes(1000),
        "huge_header.nomagic": struct.pack("<Q", 2 ** 63) + b"{}",
        "header_not_object.nomagic": struct.pack("<Q", 2) + b"[]",
        "pickle.nomagic": pickle.dumps({"weights": [1, 2, 3]}),
        "stray_bytes.nomagic": st.dumps({"a": np.zeros(2)}) + b"junk",
    }
    for name, data in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        _load_fails(path)
    bad_entries = [
        {"a": {"dtype": "F32", "shape": "12", "data_offsets": [0, 8]}},
        {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8.0]}},
        {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}},
        {"a": {"dtype": "BF16", "shape": [4], "data_offsets": [0, 8]}},
        {"a": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}},
        {"a": {"dtype": "F32", "shape": [10 ** 30], "data_offsets": [0, 8]}},
        {"a": [1, 2, 3]},
        {"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
         "b": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}},  # overlapping tensors
        {"__metadata__": {"x": 1}, "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}},
    ]
    for i, header in enumerate(bad_entries):
        text = json.dumps(header).encode()
        path = tmp_path / f"entry{i}.nomagic"
        path.write_bytes(struct.pack("<Q", len(text)) + text + bytes(8))
        _load_fails(path)


def test_directory_and_missing_path(tmp_path):
    _load_fails(tmp_path, "directory")
    _load_fails(tmp_path / "nope.nomagic", "no such file")
    with pytest.raises(nm.ModelFileError):
        nm.load(tmp_path / "no" / "dir" / "m.nomagic")
    assert _listing(tmp_path) == []


# -- data only: loading never runs code ------------------------------------------------------------------


class _Boom:
    """Unpickling this would create a file: proof that a loader executed code."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_loading_never_executes_code(tmp_path, monkeypatch):
    marker = tmp_path / "pwned"
    payloads = [
        f"__import__('os').system('touch {marker}')",
        f"eval(compile('open(r\"{marker}\", \"w\")', 'x', 'exec'))",
        pickle.dumps(_Boom(str(marker))).hex(),
        "{{ config.__class__.__init__.__globals__['os'].popen('id') }}",
    ]
    model = nm.Model(_small_model().net, _small_model().params,
                     [{"epoch": 1, "loss": 0.1, "note": p} for p in payloads], "mse",
                     {"payload": payloads[0], "pickled": payloads[2]})
    path = tmp_path / "m.nomagic"
    model.save(path)
    # the payloads are stored as plain strings; also smuggle a pickle in as raw tensor bytes
    tensors, meta = st.load_file(path)
    meta["__reduce__"] = payloads[0]
    meta["checksum"] = files._checksum(meta, tensors)
    path.write_bytes(st.dumps(tensors, meta))

    def forbidden(*args, **kwargs):
        raise AssertionError("loading a model file must not run code")

    with monkeypatch.context() as m:  # nothing on the load path may deserialise code
        m.setattr(pickle, "loads", forbidden)
        m.setattr(pickle, "load", forbidden)
        m.setattr(np, "load", forbidden)
        loaded = nm.load(path)
    assert [h["note"] for h in loaded.history] == payloads  # just data
    assert loaded.info["payload"] == payloads[0]
    assert not marker.exists()
    # a pickle where tensor bytes belong is read as numbers or refused, never unpickled
    raw = pickle.dumps(_Boom(str(marker)))
    text = json.dumps({"dense_0.weight": {"dtype": "U8", "shape": [len(raw)], "data_offsets": [0, len(raw)]}})
    bad = tmp_path / "pickle_in_tensor.nomagic"
    bad.write_bytes(struct.pack("<Q", len(text)) + text.encode() + raw)
    _load_fails(bad)
    tensors, _ = st.load_file(bad)
    assert tensors["dense_0.weight"].tobytes() == raw
    assert not marker.exists()


def test_written_files_get_the_usual_permissions(tmp_path):
    import stat

    from nomagic.io import atomic_write_bytes

    mask = os.umask(0o022)
    os.umask(mask)
    path = tmp_path / "out.bin"
    atomic_write_bytes(path, b"data")
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask
    assert path.read_bytes() == b"data"
