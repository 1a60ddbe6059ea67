"""``EndpointConformance`` and ``MiddlewareConformance``: the contracts of
:class:`~forge_kernel.interfaces.endpoint.Endpoint` and ``Middleware``.

Both only need FastAPI/Starlette (no model): an endpoint is mounted on a bare application with
``server=None`` unless the subclass provides a ``server`` fixture; a middleware wraps a trivial
ASGI app and must pass requests through to it. Usage::

    class TestHealth(EndpointConformance):
        paths = ["/health"]                       # routes the endpoint must add

        @pytest.fixture()
        def endpoint(self):
            return HealthEndpoint()
"""

from __future__ import annotations

from typing import Any

import pytest

from forge_kernel.interfaces.endpoint import Endpoint, Middleware


class EndpointConformance:
    """Subclass and provide an ``endpoint`` fixture; list the routes it adds in ``paths``."""

    paths: list[str] = []

    @pytest.fixture()
    def endpoint(self) -> Endpoint:
        raise NotImplementedError("provide an `endpoint` fixture")

    @pytest.fixture()
    def server(self) -> Any:
        """The server context given to ``mount``; override for endpoints that need one."""
        return None

    def test_is_an_endpoint(self, endpoint: Endpoint) -> None:
        assert isinstance(endpoint, Endpoint)
        assert isinstance(endpoint.name, str) and endpoint.name

    def test_mount_adds_routes(self, endpoint: Endpoint, server: Any) -> None:
        fastapi = pytest.importorskip("fastapi")
        app = fastapi.FastAPI()
        before = {getattr(r, "path", None) for r in app.routes}
        endpoint.mount(app, server)
        added = {getattr(r, "path", None) for r in app.routes} - before
        assert added, "mount() added no route"
        for path in self.paths:
            assert path in added, f"{path} not mounted (added: {sorted(map(str, added))})"


class MiddlewareConformance:
    """Subclass and provide a ``middleware`` fixture (and ``server`` if it needs one).
    ``passthrough_headers`` are sent with the probe request (e.g. a valid API key)."""

    passthrough_headers: dict[str, str] = {}

    @pytest.fixture()
    def middleware(self) -> Middleware:
        raise NotImplementedError("provide a `middleware` fixture")

    @pytest.fixture()
    def server(self) -> Any:
        return None

    def test_is_a_middleware(self, middleware: Middleware) -> None:
        assert isinstance(middleware, Middleware)
        assert isinstance(middleware.name, str) and middleware.name
        assert isinstance(middleware.order, int)

    def test_wraps_and_delegates(self, middleware: Middleware, server: Any) -> None:
        fastapi = pytest.importorskip("fastapi")
        from fastapi.testclient import TestClient

        app = fastapi.FastAPI()

        @app.get("/conformance-probe")
        def probe() -> dict[str, bool]:
            return {"reached": True}

        wrapped = middleware.wrap(app, server)
        assert callable(wrapped), "wrap() must return an ASGI application"
        with TestClient(wrapped) as client:
            response = client.get("/conformance-probe", headers=self.passthrough_headers)
        assert response.status_code == 200, response.text
        assert response.json() == {"reached": True}
