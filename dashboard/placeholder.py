"""A minimal dashboard page until the Streamlit app lands: the sessions JetStream holds,
refreshed every few seconds. It reads the same events the real dashboard will."""

from __future__ import annotations

import html
import logging
from datetime import UTC, datetime

from aiohttp import web

from stream import bus
from stream.settings import BusSettings

log = logging.getLogger(__name__)

NC = web.AppKey("nc", object)
SETTINGS = web.AppKey("settings", BusSettings)


def _when(ms: float | None) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%H:%M:%S UTC") if ms else "-"


async def index(request: web.Request) -> web.Response:
    rows = ""
    try:
        nc = request.app[NC]
        sessions = await bus.list_sessions(nc.jetstream())
        for s in sessions:
            rows += (
                f"<tr><td><code>{html.escape(s.session)}</code></td><td>{s.status}</td>"
                f"<td>{_when(s.started_ms)}</td><td>{_when(s.ended_ms)}</td><td>{s.events}</td>"
                f"<td>{html.escape(s.reason)}</td></tr>"
            )
        body = rows or '<tr><td colspan="6">no sessions yet</td></tr>'
        banner = ""
    except Exception as exc:  # JetStream away: say so, keep serving
        body, banner = "", f'<p class="err">JetStream unavailable: {html.escape(str(exc))}</p>'
    page = f"""<!doctype html><html><head><meta charset="utf-8">
<meta http-equiv="refresh" content="3"><title>intervue dashboard</title>
<style>body{{font:14px system-ui;margin:24px}}td,th{{padding:4px 12px;text-align:left}}
.err{{color:#c0392b}}</style></head><body><h1>intervue — sessions</h1>
<p>The full interviewer dashboard is not built yet; this page lists recorded sessions.</p>
{banner}<table><tr><th>session</th><th>status</th><th>started</th><th>ended</th>
<th>events</th><th>end reason</th></tr>{body}</table></body></html>"""
    return web.Response(text=page, content_type="text/html")


async def _startup(app: web.Application) -> None:
    app[NC] = await bus.connect(app[SETTINGS], "intervue-dashboard")


async def _cleanup(app: web.Application) -> None:
    await app[NC].close()


def run_dashboard(settings: BusSettings, host: str, port: int) -> None:
    app = web.Application()
    app[SETTINGS] = settings
    app.router.add_get("/", index)
    app.on_startup.append(_startup)
    app.on_cleanup.append(_cleanup)
    log.info("dashboard at http://%s:%d/", host, port)
    web.run_app(app, host=host, port=port, print=None, access_log=None)
