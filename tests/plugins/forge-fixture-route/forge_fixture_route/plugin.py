"""Adds ``GET /fixture/echo`` and the WebSocket ``/fixture/ws`` (echoes one message)."""

from forge_kernel import hookimpl
from forge_kernel.interfaces.endpoint import Endpoint


class FixtureRoutes(Endpoint):
    name = "fixture-route"

    def mount(self, app, server) -> None:
        from fastapi import WebSocket

        @app.get("/fixture/echo")
        async def echo(text: str = "hi") -> dict:
            return {"echo": text, "model": server.model_name}

        @app.websocket("/fixture/ws")
        async def ws(socket: WebSocket) -> None:
            await socket.accept()
            await socket.send_text(await socket.receive_text())
            await socket.close()


@hookimpl
def forge_register_endpoints(register) -> None:
    register("fixture-route", FixtureRoutes)
