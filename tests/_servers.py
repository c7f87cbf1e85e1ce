"""An aiohttp app on a free loopback port, for tests that drive it over real HTTP."""

from __future__ import annotations

from aiohttp import web


async def serve_app(app: web.Application) -> tuple[web.AppRunner, str]:
    """Start `app` on 127.0.0.1 (a free port) and return its runner (call
    ``await runner.cleanup()`` to stop it) and base URL, e.g. ``http://127.0.0.1:41234``."""
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    return runner, f"http://127.0.0.1:{port}"
