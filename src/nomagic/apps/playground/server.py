"""The playground's web server: a Starlette app serving the page (``static/``), one WebSocket per
training session (``/ws``, the protocol in ``session``), and the trained model for download.

Bound to 127.0.0.1 unless told otherwise. At most ``LIMITS["max_sessions"]`` sessions at once; a
closed tab ends its session and its training. ``run(host, port)`` serves until Ctrl-C.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import tempfile
from importlib import resources
from pathlib import Path
from urllib.parse import urlsplit

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.websockets import WebSocket, WebSocketDisconnect

from .session import LIMITS, Session

log = logging.getLogger("nomagic.playground")
STATIC = Path(str(resources.files("nomagic").joinpath("apps", "playground", "static")))
WS_MAX_SIZE = LIMITS["max_message_bytes"] + 65_536  # bigger frames close the connection (1009)


def _dumps(msg: dict) -> str:
    return json.dumps(msg, allow_nan=False, separators=(",", ":"))


def create_app(max_sessions: int | None = None) -> Starlette:
    """The playground's app; ``app.state.sessions`` maps a session id to its ``Session``."""
    limit = LIMITS["max_sessions"] if max_sessions is None else max_sessions
    sessions: dict[str, Session] = {}

    async def index(request: Request) -> Response:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})

    async def health(request: Request) -> Response:
        return JSONResponse({"ok": True, "sessions": len(sessions), "max_sessions": limit})

    async def model(request: Request) -> Response:
        sid, fmt = request.path_params["sid"], request.path_params["fmt"]
        session = sessions.get(sid)
        if session is None or session.closed:
            return JSONResponse({"error": "no such session (it ends when its page is closed)"}, status_code=404)
        if fmt not in ("nomagic", "onnx"):
            return JSONResponse({"error": "format must be .nomagic or .onnx"}, status_code=404)
        from ...model.params import Params
        from ...train.model import Model

        info = {"playground": {k: session.config[k] for k in ("dataset", "features", "layers", "activations", "rnn")},
                "inputs": "the features of the point mapped from its data domain onto [-6, 6]²",
                "domain": list(session.data.domain), "epochs": session.epoch}
        m = Model(session.net, Params(session.P), loss=session.loss_name, info=info)
        fd, path = tempfile.mkstemp(suffix=f".{fmt}", prefix="nomagic-playground-")
        os.close(fd)
        try:
            if fmt == "nomagic":
                m.save(path)
            else:
                try:
                    import onnx  # noqa: F401
                except ImportError:
                    return JSONResponse({"error": "ONNX export needs the onnx package: pip install 'nomagic[onnx]'"},
                                        status_code=501)
                from ...io.onnx_export import export_onnx

                try:
                    export_onnx(m, path)
                except Exception as exc:
                    return JSONResponse({"error": f"ONNX export failed: {exc}"}, status_code=422)
            body = Path(path).read_bytes()
        finally:
            Path(path).unlink(missing_ok=True)
        return Response(body, media_type="application/octet-stream",
                        headers={"Content-Disposition": f'attachment; filename="playground.{fmt}"'})

    async def ws_endpoint(ws: WebSocket) -> None:
        origin = ws.headers.get("origin")
        host = ws.headers.get("host", "")
        if origin and urlsplit(origin).netloc != host:  # another site's page may not drive a session
            await ws.close(code=1008)
            return
        await ws.accept()
        if len(sessions) >= limit:
            await ws.send_text(_dumps({"type": "error", "message": f"too many sessions: the limit is {limit}; "
                                                                    "close another playground tab and reload"}))
            await ws.close(code=1013)
            return
        sid = secrets.token_urlsafe(12)
        session = Session(sid)
        sessions[sid] = session
        lock = asyncio.Lock()

        async def send(msg: dict) -> None:
            async with lock:
                await ws.send_text(_dumps(msg))

        runner = asyncio.create_task(session.run_loop(send))
        try:
            await send(session.hello())
            for msg in session.config_messages():
                await send(msg)
            while True:
                message = await ws.receive()
                if message["type"] == "websocket.disconnect":
                    break
                text = message.get("text")
                if text is None:
                    replies = [{"type": "error", "message": "send JSON text, not binary frames"}]
                else:
                    replies = session.handle(text)
                for reply in replies:
                    await send(reply)
        except WebSocketDisconnect:
            pass
        except Exception:  # the connection broke: end the session all the same
            log.debug("playground: connection %s ended", sid, exc_info=True)
        finally:
            runner.cancel()
            try:
                await runner
            except BaseException:  # noqa: BLE001 - it was cancelled or had failed: either way it is over
                pass
            session.close()
            sessions.pop(sid, None)

    app = Starlette(routes=[
        Route("/", index),
        Route("/api/health", health),
        Route("/api/model/{sid}.{fmt}", model),
        WebSocketRoute("/ws", ws_endpoint),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ])
    app.state.sessions = sessions
    return app


def make_server(host: str = "127.0.0.1", port: int = 8765, max_sessions: int | None = None):
    """A ``uvicorn.Server`` for the playground (``.run()`` serves until Ctrl-C)."""
    import uvicorn

    config = uvicorn.Config(create_app(max_sessions), host=host, port=port, log_level="warning",
                            ws_max_size=WS_MAX_SIZE, ws_ping_interval=20, ws_ping_timeout=20, lifespan="off")
    return uvicorn.Server(config)


def run(host: str = "127.0.0.1", port: int = 8765) -> None:
    """Serve the playground until Ctrl-C."""
    make_server(host, port).run()
