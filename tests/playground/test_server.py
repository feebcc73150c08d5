"""The playground's HTTP and WebSocket API through Starlette's TestClient: every bad message gets
an error that says what is wrong, and the connection stays usable."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("starlette")
pytest.importorskip("httpx")

from starlette.testclient import TestClient  # noqa: E402

import nomagic as nm  # noqa: E402
from nomagic.apps.playground.server import create_app  # noqa: E402
from nomagic.apps.playground.session import LIMITS  # noqa: E402


@pytest.fixture
def client():
    with TestClient(create_app()) as c:
        yield c


def recv_until(ws, kind: str, limit: int = 50) -> dict:
    """Messages until one of type ``kind`` (others, updates say, are skipped)."""
    for _ in range(limit):
        msg = ws.receive_json()
        if msg["type"] == kind:
            return msg
        if msg["type"] == "error" and kind != "error":
            raise AssertionError(f"unexpected error: {msg['message']}")
    raise AssertionError(f"no {kind!r} message in {limit}")


def opened(ws) -> dict:
    hello = ws.receive_json()
    assert hello["type"] == "hello"
    recv_until(ws, "config")
    recv_until(ws, "update")
    return hello


def usable(ws) -> None:
    """The connection still answers: a full state comes back."""
    ws.send_text(json.dumps({"type": "state"}))
    assert recv_until(ws, "config")["config"]["dataset"]
    assert recv_until(ws, "update")["heatmap"]["grid"] == 50


def config(ws, **change) -> dict:
    ws.send_text(json.dumps({"type": "config", "config": change}))
    return recv_until(ws, "config")


def test_page_static_files_and_health(client):
    r = client.get("/")
    assert r.status_code == 200 and "<script src=\"/static/app.js\">" in r.text
    for name in ("app.js", "style.css", "index.html"):
        assert client.get(f"/static/{name}").status_code == 200
    assert "cdn" not in r.text.lower() and "http://" not in r.text and "https://" not in r.text
    assert client.get("/api/health").json()["ok"] is True


def test_hello_config_and_update_describe_the_session(client):
    with client.websocket_connect("/ws") as ws:
        hello = ws.receive_json()
        assert hello["type"] == "hello" and hello["limits"]["max_neurons"] == 32
        assert "processes" in hello["options"]["engines"] and "step" in hello["options"]["activations"]
        cfg = recv_until(ws, "config")
        assert cfg["config"]["layers"] == [4, 2] and cfg["config"]["lr"] == 0.03
        assert [layer["size"] for layer in cfg["net"]["layers"]] == [4, 2, 1]
        assert len(cfg["data"]["train"]) == 250 and len(cfg["data"]["test"]) == 250
        upd = recv_until(ws, "update")
        assert upd["epoch"] == 0 and upd["test_loss"] > 0
        assert len(__import__("base64").b64decode(upd["heatmap"]["b64"])) == 50 * 50
        assert set(upd["neurons"]) == {"x1", "x2", "h1[0]", "h1[1]", "h1[2]", "h1[3]", "h2[0]", "h2[1]"}
        assert np.array(upd["weights"]["h1.weight"]).shape == (2, 4)
        assert upd["metrics"]["confusion"] and upd["trace"] is None


BAD = [
    ("not json {", "not JSON"),
    ("[1, 2, 3]", "JSON object"),
    ('"run"', "JSON object"),
    ('{"no_type": 1}', "unknown message type"),
    ('{"type": "fly"}', "unknown message type 'fly'".replace("'", '"')),
    ('{"type": 7}', "unknown message type"),
    ('{"type": "config"}', "needs the field 'config'"),
    ('{"type": "config", "config": 5}', "config must be an object"),
    ('{"type": "config", "config": {"speed": 1}}', "unknown setting 'speed'"),
    ('{"type": "config", "config": {"lr": "fast"}}', "learning rate (lr) must be a number"),
    ('{"type": "config", "config": {"lr": NaN}}', "must be a finite number"),
    ('{"type": "config", "config": {"lr": Infinity}}', "must be a finite number"),
    ('{"type": "config", "config": {"lr": true}}', "must be a number"),
    ('{"type": "config", "config": {"lr": 100}}', "<= 10"),
    ('{"type": "config", "config": {"lr": 0}}', "> 0"),
    ('{"type": "config", "config": {"noise": 70}}', "noise must be >= 0 and <= 50"),
    ('{"type": "config", "config": {"ratio": 5}}', "ratio must be >= 10"),
    ('{"type": "config", "config": {"batch": 0}}', "batch must be >= 1"),
    ('{"type": "config", "config": {"batch": 2.5}}', "whole number"),
    ('{"type": "config", "config": {"reg_rate": -1}}', "regularization rate"),
    ('{"type": "config", "config": {"dataset": "moons"}}', "dataset must be one of"),
    ('{"type": "config", "config": {"dataset": "plane"}}', "regression data set"),
    ('{"type": "config", "config": {"features": []}}', "non-empty list"),
    ('{"type": "config", "config": {"features": ["x3"]}}', "each feature must be one of"),
    ('{"type": "config", "config": {"layers": "4,2"}}', "layers must be a list"),
    ('{"type": "config", "config": {"layers": [4, -2]}}', "layers[1] (neurons) must be >= 1"),
    ('{"type": "config", "config": {"layers": [33]}}', "<= 32"),
    ('{"type": "config", "config": {"layers": [2, 2, 2, 2, 2, 2, 2, 2, 2]}}', "the limit is 8 layers"),
    ('{"type": "config", "config": {"activations": ["swish", "tanh"]}}', "activations[0] must be one of"),
    ('{"type": "config", "config": {"engine": "gpu"}}', "engine must be one of"),
    ('{"type": "config", "config": {"engine": "processes", "layers": [32, 32]}}', "processes engine takes at most 500"),
    ('{"type": "config", "config": {"rnn": "yes"}}', "rnn must be true or false"),
    ('{"type": "config", "config": {"fps": 1000}}', "<= 60"),
    ('{"type": "config", "config": {"dataset": "csv"}}', "no uploaded data yet"),
    ('{"type": "set_weight"}', "needs the field 'param'"),
    ('{"type": "set_weight", "param": "nope", "index": [0], "value": 1}', "no param"),
    ('{"type": "set_weight", "param": "h1.weight", "index": [5, 0], "value": 1}', "index[0] must be >= 0 and <= 1"),
    ('{"type": "set_weight", "param": "h1.weight", "index": [0], "value": 1}', "index must be a list of 2"),
    ('{"type": "set_weight", "param": "h1.weight", "index": [0, 0], "value": NaN}', "finite"),
    ('{"type": "set_weight", "param": "h1.weight", "index": [0, 0], "value": 1e9}', "<= 100"),
    ('{"type": "inject_crash", "neuron": "h1[0]"}', "switch the engine to 'processes'"),
    ('{"type": "upload"}', "needs the field 'csv'"),
    ('{"type": "upload", "csv": 12}', "must be the file's text"),
    ('{"type": "upload", "csv": "hello world"}', "line 1 has 1 fields"),
    ('{"type": "upload", "csv": "x1,x2,label\\n1,2,a\\n"}', "line 2 is not three numbers"),
    ('{"type": "upload", "csv": "1,2,0\\n1,nan,1\\n"}', "not a finite number"),
    ('{"type": "upload", "csv": "1,2,0\\n2,2,1\\n"}', "at least 4 lines"),
    ('{"type": "upload", "csv": "1,2,1\\n2,2,1\\n3,1,1\\n4,4,1\\n"}', "every label is the same"),
    ('{"type": "remove_region", "x0": 0}', "needs the field 'x1'"),
    ('{"type": "remove_region", "x0": -9, "x1": 9, "y0": -9, "y1": 9}', "fewer than 2 training points"),
    ("{" * 100_000, "not JSON"),
]


@pytest.mark.parametrize("text,expected", BAD, ids=[b[1][:30] for b in BAD])
def test_bad_message_gets_an_error_and_the_connection_stays_usable(client, text, expected):
    with client.websocket_connect("/ws") as ws:
        opened(ws)
        ws.send_text(text)
        err = recv_until(ws, "error")
        assert expected in err["message"], err["message"]
        usable(ws)


def test_huge_upload_and_too_many_rows_are_refused_with_the_limit(client):
    with client.websocket_connect("/ws") as ws:
        opened(ws)
        big = "x1,x2,label\n" + "1.000000,2.000000,1\n" * 60_000  # 1.2 MB
        ws.send_text(json.dumps({"type": "upload", "csv": big}))
        assert "the limit is 1,000,000 bytes" in recv_until(ws, "error")["message"]
        rows = "\n".join(f"{i % 7},{i % 5},{i % 2}" for i in range(LIMITS["max_upload_rows"] + 1))
        ws.send_text(json.dumps({"type": "upload", "csv": rows}))
        assert "the limit is 5,000" in recv_until(ws, "error")["message"]
        ws.send_text("x" * (LIMITS["max_message_bytes"] + 1))
        assert "message too large" in recv_until(ws, "error")["message"]
        ws.send_bytes(b"\x00\x01")
        assert "not binary" in recv_until(ws, "error")["message"]
        usable(ws)


def test_a_refused_setting_leaves_everything_as_it_was(client):
    with client.websocket_connect("/ws") as ws:
        opened(ws)
        config(ws, dataset="xor", layers=[3])
        ws.send_text(json.dumps({"type": "config", "config": {"layers": [3, 3], "lr": 99}}))
        recv_until(ws, "error")
        ws.send_text(json.dumps({"type": "state"}))
        cfg = recv_until(ws, "config")["config"]
        assert cfg["layers"] == [3] and cfg["lr"] == 0.03 and cfg["dataset"] == "xor"


def test_step_trains_and_the_loss_falls(client):
    with client.websocket_connect("/ws") as ws:
        opened(ws)
        config(ws, dataset="xor", features=["x1", "x2", "x1x2"], lr=0.1)
        first = recv_until(ws, "update")["test_loss"]
        for _ in range(15):
            ws.send_text('{"type": "step"}')
            upd = recv_until(ws, "update")
        assert upd["epoch"] == 15 and upd["test_loss"] < first / 2
        assert upd["metrics"]["test_accuracy"] > 0.9


def test_set_weight_changes_the_network(client):
    with client.websocket_connect("/ws") as ws:
        opened(ws)
        ws.send_text(json.dumps({"type": "set_weight", "param": "out.weight", "index": [1, 0], "value": -2.5}))
        upd = recv_until(ws, "update")
        assert upd["weights"]["out.weight"][1][0] == -2.5
        ws.send_text(json.dumps({"type": "set_weight", "param": "h1.bias", "index": [3], "value": 1.25}))
        assert recv_until(ws, "update")["weights"]["h1.bias"][3] == 1.25


def test_run_stops_after_n_epochs_and_at_a_target_loss(client):
    with client.websocket_connect("/ws") as ws:
        opened(ws)
        config(ws, stop_epochs=3, fps=60)
        ws.send_text('{"type": "run"}')
        assert recv_until(ws, "stopped")["reason"] == "reached 3 epochs"
        config(ws, stop_epochs=0, target_loss=0.5, dataset="xor", features=["x1x2"], lr=0.3)
        ws.send_text('{"type": "run"}')
        assert "reached the target 0.5" in recv_until(ws, "stopped", limit=500)["reason"]


def test_processes_engine_streams_messages_and_survives_a_crash(client):
    with client.websocket_connect("/ws") as ws:
        opened(ws)
        config(ws, engine="processes")
        ws.send_text(json.dumps({"type": "inject_crash", "neuron": "h1[9]"}))
        assert "no neuron" in recv_until(ws, "error")["message"]
        ws.send_text(json.dumps({"type": "inject_crash", "neuron": "h2[1]", "phase": "backward"}))
        assert "crash armed" in recv_until(ws, "note")["message"]
        ws.send_text('{"type": "step"}')
        upd = recv_until(ws, "update")
        trace = upd["trace"]
        assert trace["received"] > 500 and trace["dropped"] == 0
        assert trace["kinds"]["forward"] > 0 and trace["kinds"]["delta"] > 0 and trace["kinds"]["commit"] > 0
        assert trace["links"]["in0>h1[0]"]["forward"] == 25  # one per batch of the epoch
        assert any("h2[1] crashed (backward), restarted from its snapshot" in n for n in upd["notes"])
        assert upd["epoch"] == 1


def test_engine_switch_keeps_the_weights(client):
    with client.websocket_connect("/ws") as ws:
        opened(ws)
        for _ in range(3):
            ws.send_text('{"type": "step"}')
            before = recv_until(ws, "update")
        config(ws, engine="processes")
        after = recv_until(ws, "update")
        assert after["epoch"] == 3 and after["weights"] == before["weights"]


def test_upload_csv_two_and_more_classes_and_regression(client):
    with client.websocket_connect("/ws") as ws:
        opened(ws)
        rng = np.random.default_rng(0)
        P = rng.uniform(-1, 1, (60, 2))
        two = "x1,x2,label\n" + "\n".join(f"{a:.3f},{b:.3f},{int(a > b)}" for a, b in P)
        ws.send_text(json.dumps({"type": "upload", "csv": two, "name": "two.csv"}))
        cfg = recv_until(ws, "config")
        assert cfg["config"]["dataset"] == "csv" and cfg["upload"] == "two.csv"
        assert cfg["data"]["n_classes"] == 2 and cfg["net"]["output_activation"] == "tanh"
        three = "\n".join(f"{a:.3f},{b:.3f},{int((a + 1) * 1.5)}" for a, b in P)
        ws.send_text(json.dumps({"type": "upload", "csv": three}))
        cfg = recv_until(ws, "config")
        assert cfg["data"]["n_classes"] == 3 and cfg["net"]["loss"] == "cross_entropy"
        upd = recv_until(ws, "update")
        assert "classes" in upd["heatmap"] and len(upd["metrics"]["confusion"]) == 3
        reg = "\n".join(f"{a:.3f},{b:.3f},{a * 0.37 + b:.4f}" for a, b in P)
        ws.send_text(json.dumps({"type": "upload", "csv": reg}))
        cfg = recv_until(ws, "config")
        assert cfg["config"]["problem"] == "regression" and cfg["net"]["output_activation"] == "linear"


def test_planner_audit_changes_when_a_region_is_removed(client):
    with client.websocket_connect("/ws") as ws:
        opened(ws)
        ws.send_text(json.dumps({"type": "config", "config": {"dataset": "planner", "points": 2000}}))
        recv_until(ws, "config")
        before = recv_until(ws, "audit")
        assert before["train_days"] > 500
        ws.send_text(json.dumps({"type": "remove_region", "x0": 24, "x1": 45, "y0": -5, "y1": 60}))
        cfg = recv_until(ws, "config")
        assert max(p[0] for p in cfg["data"]["train"]) < 24
        after = recv_until(ws, "audit")
        assert after["train_days"] < before["train_days"]
        assert after["warnings"] != before["warnings"]
        assert any("25–30 °C" in w or "30 °C or more" in w or "summer" in w for w in after["warnings"]), after


def test_recurrent_network_is_shown_unrolled(client):
    with client.websocket_connect("/ws") as ws:
        opened(ws)
        cfg = config(ws, rnn=True, features=["x1", "x2", "x1x2"], layers=[3])
        assert cfg["net"]["layers"][0]["kind"] == "recurrent"
        upd = recv_until(ws, "update")
        assert upd["unrolled"]["steps"] == 3 and len(upd["unrolled"]["maps"][2]) == 3


def test_activation_per_layer_step_and_softmax(client):
    with client.websocket_connect("/ws") as ws:
        opened(ws)
        cfg = config(ws, layers=[3, 2], activations=["step", "softmax"])
        assert [layer["activation"] for layer in cfg["net"]["layers"]] == ["step", "softmax", "tanh"]
        assert recv_until(ws, "update")["epoch"] == 0
        ws.send_text('{"type": "step"}')
        assert recv_until(ws, "update")["epoch"] == 1


def test_model_download_nomagic_and_onnx(client, tmp_path):
    with client.websocket_connect("/ws") as ws:
        sid = opened(ws)["session"]
        ws.send_text('{"type": "step"}')
        upd = recv_until(ws, "update")
        r = client.get(f"/api/model/{sid}.nomagic")
        assert r.status_code == 200
        path = tmp_path / "m.nomagic"
        path.write_bytes(r.content)
        model = nm.load(path)
        assert np.allclose(model.params["out.weight"], upd["weights"]["out.weight"], atol=1e-4)
        r = client.get(f"/api/model/{sid}.onnx")
        try:
            import onnx  # noqa: F401
            assert r.status_code == 200 and len(r.content) > 100
        except ImportError:
            assert r.status_code == 501 and "pip install" in r.json()["error"]
    assert client.get(f"/api/model/{sid}.nomagic").status_code == 404  # the session ended with its page
    assert client.get("/api/model/nosuch.nomagic").status_code == 404


def test_sessions_are_bounded_and_end_with_their_page():
    app = create_app(max_sessions=2)
    with TestClient(app) as c:
        with c.websocket_connect("/ws") as a, c.websocket_connect("/ws") as b:
            opened(a)
            opened(b)
            with c.websocket_connect("/ws") as third:
                msg = third.receive_json()
                assert msg["type"] == "error" and "too many sessions: the limit is 2" in msg["message"]
            assert len(app.state.sessions) == 2
            a.send_text('{"type": "run"}')
            recv_until(a, "update")
        assert c.get("/api/health").json()["sessions"] == 0


def test_another_sites_page_may_not_open_a_session(client):
    from starlette.websockets import WebSocketDisconnect

    with pytest.raises(WebSocketDisconnect):
        with client.websocket_connect("/ws", headers={"origin": "http://evil.example"}) as ws:
            ws.receive_json()


def test_cli_without_the_extra_says_how_to_install_it():
    code = ("import sys; sys.modules['uvicorn'] = None\n"
            "from nomagic.cli import main\nsys.exit(main(['playground']))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == ["nomagic: the playground needs its extra: pip install 'nomagic[playground]'"]


def test_cli_help_lists_the_playground():
    r = subprocess.run([sys.executable, "-m", "nomagic", "playground", "--help"], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0 and "--port" in r.stdout and "127.0.0.1" in r.stdout


def test_cli_on_a_taken_port_says_so_in_one_line():
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = subprocess.run([sys.executable, "-m", "nomagic", "playground", "--port", str(port)], capture_output=True,
                           text=True, timeout=60)
    assert r.returncode == 2
    assert r.stderr.startswith(f"nomagic: error: cannot serve on 127.0.0.1:{port}") and r.stderr.count("\n") == 1
