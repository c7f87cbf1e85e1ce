"""A local OpenAI-compatible chat-completions server for tests (aiohttp, 127.0.0.1).

No paid API is reachable here, so the wire path is tested with the real ``openai``
client against this server, the narrowest seam there is. It answers
``POST /v1/chat/completions`` from a queue of canned behaviours, one per request, and
records every request body so tests can assert on the prompts.

    server = FakeOpenAI()
    await server.start()
    server.push(Reply.status(500), Reply.json({"questions": [...]}))
    ... LlmSettings(base_url=server.base_url, ...) ...
    await server.stop()

With ``rejects_response_format`` set, every request that carries ``response_format`` gets
a 400 first, as from a server that does not support JSON mode (the queue is not used).
An empty queue answers 500 with a message saying so, which fails the test loudly.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from aiohttp import web


@dataclass(frozen=True)
class Reply:
    """One canned behaviour of the fake server."""

    #: "content" (a 200 with this assistant content), or "status" (an error response).
    kind: str
    #: The assistant message content (kind "content") or the error message.
    text: str = ""
    #: HTTP status for kind "status".
    status: int = 200
    #: Seconds to wait before answering (past the client's timeout = a timeout).
    delay_s: float = 0.0
    #: Extra response headers (Retry-After for a 429).
    headers: tuple[tuple[str, str], ...] = ()

    @classmethod
    def json(cls, data: Any, *, delay_s: float = 0.0) -> Reply:
        """A valid reply whose content is `data` as JSON."""
        return cls("content", json.dumps(data, ensure_ascii=False), delay_s=delay_s)

    @classmethod
    def content(cls, text: str, *, delay_s: float = 0.0) -> Reply:
        """A reply with this exact content (malformed JSON, prose, a code fence, …)."""
        return cls("content", text, delay_s=delay_s)

    @classmethod
    def error(cls, status: int, message: str = "", *, retry_after: str | None = None) -> Reply:
        """An HTTP error in OpenAI's error shape."""
        headers = (("Retry-After", retry_after),) if retry_after is not None else ()
        return cls("status", message or f"fake error {status}", status=status, headers=headers)

    @classmethod
    def slow(cls, delay_s: float, data: Any | None = None) -> Reply:
        """A reply that arrives after `delay_s` (set it past the client timeout)."""
        return cls.json(data if data is not None else {"late": True}, delay_s=delay_s)


class FakeOpenAI:
    """The fake server; see the module docstring."""

    def __init__(self) -> None:
        self.queue: deque[Reply] = deque()
        #: Every request body received, in order (parsed JSON).
        self.requests: list[dict[str, Any]] = []
        #: The Authorization header of every request, in order.
        self.auth_headers: list[str] = []
        #: Answer 400 to any request carrying response_format (a server without JSON mode).
        self.rejects_response_format = False
        self._runner: web.AppRunner | None = None
        self._stopping = asyncio.Event()
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def push(self, *replies: Reply) -> None:
        self.queue.extend(replies)

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        # A slow reply sleeps on `_stopping`, so shutdown never waits for it.
        self._runner = web.AppRunner(app, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server  # aiohttp keeps the bound socket here
        assert server is not None and server.sockets
        self.port = server.sockets[0].getsockname()[1]
        return self.base_url

    async def stop(self) -> None:
        self._stopping.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # ------------------------------------------------------------------ helpers for tests

    def messages(self, index: int = -1) -> list[dict[str, str]]:
        """The chat messages of a recorded request."""
        return self.requests[index]["messages"]

    def user_text(self, index: int = -1) -> str:
        """All user-message text of a recorded request, joined."""
        return "\n".join(m["content"] for m in self.messages(index) if m["role"] == "user")

    def system_text(self, index: int = -1) -> str:
        return "\n".join(m["content"] for m in self.messages(index) if m["role"] == "system")

    # ------------------------------------------------------------------ the endpoint

    async def _chat(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append(body)
        self.auth_headers.append(request.headers.get("Authorization", ""))
        if self.rejects_response_format and "response_format" in body:
            return _error(400, "response_format is not supported by this server", ())
        if not self.queue:
            return _error(500, "fake server: no canned reply left in the queue", ())
        reply = self.queue.popleft()
        if reply.delay_s:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), reply.delay_s)
        if reply.kind == "status":
            return _error(reply.status, reply.text, reply.headers)
        return web.json_response(
            {
                "id": f"chatcmpl-fake-{len(self.requests)}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body.get("model", "fake"),
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": reply.text},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
            }
        )


def _error(status: int, message: str, headers: tuple[tuple[str, str], ...]) -> web.Response:
    kind = "invalid_request_error" if status < 500 else "server_error"
    return web.json_response(
        {"error": {"message": message, "type": kind, "param": None, "code": None}},
        status=status,
        headers=dict(headers),
    )
