"""Headless Chromium with a fake camera and microphone, driven by Playwright's async API.

Reusable by tests and benchmarks (no pytest imports)::

    async with launch_browser(video=face_y4m, audio=speech_wav) as browser:
        async with logged_page(browser, url) as lp:
            result = await lp.page.evaluate("...")
            assert ..., lp.describe()

Chromium is the system one (``/usr/bin/chromium``, override with ``INTERVUE_CHROMIUM``);
Playwright never downloads a browser here.
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from playwright.async_api import Browser, BrowserContext, ConsoleMessage, Page, async_playwright

from deploy.speech_synthesis import CHROMIUM_SWITCH, PrivateSpeechDispatcher

CHROMIUM = os.environ.get("INTERVUE_CHROMIUM", "/usr/bin/chromium")

# Flags for a headless, offline, GPU-less machine. Playwright puts its own defaults first
# (among them --no-first-run, --disable-background-networking, --disable-component-update and,
# when headless, --headless and --mute-audio, which mutes output only, not capture); repeating
# a plain switch is harmless. Do NOT add --disable-features/--enable-features: Chromium keeps
# only the last occurrence of a switch, so it would silently replace Playwright's own lists.
HEADLESS_MACHINE_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
)

# getUserMedia without a permission prompt, from Chromium's fake capture devices.
FAKE_MEDIA_ARGS = (
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
)

# WebRTC to an aiortc server on the same machine:
# * --allow-loopback-in-peer-connection: Chromium otherwise never gathers ICE candidates on
#   the loopback interface, so 127.0.0.1 is unusable, and on a machine whose only interface
#   is lo the offer has no candidates at all.
# * --force-webrtc-ip-handling-policy=default: gather on every interface (Chromium's default
#   policy, spelled out).
# The server side needs a loopback candidate too: aioice (aiortc's ICE) leaves 127.0.0.1 and
# ::1 out of its host candidates, so with only lo (e.g. `unshare -n`) the answer has none and
# ICE never starts; on a machine with another interface (eth0) the call connects anyway.
# Raw host IPs (not mDNS ``*.local`` names, which aioice would have to resolve by multicast)
# are used once the page holds camera/microphone permission; call getUserMedia before
# createOffer.
WEBRTC_LOOPBACK_ARGS = (
    "--allow-loopback-in-peer-connection",
    "--force-webrtc-ip-handling-policy=default",
)


def chromium_args(
    video: str | os.PathLike[str] | None = None,
    audio: str | os.PathLike[str] | None = None,
    *,
    loop_audio: bool = True,
    extra: Sequence[str] = (),
) -> list[str]:
    """Command-line flags for Chromium with a fake camera/microphone.

    ``video``: a Y4M (4:2:0) or MJPEG file, played in a loop at its own frame rate and size.
    ``audio``: a PCM WAV file, looped unless ``loop_audio`` is False (then silence follows).
    With neither, Chromium's built-in fake devices are used (a green test pattern with a
    frame counter, and a beep every second)."""
    args = [*HEADLESS_MACHINE_ARGS, *FAKE_MEDIA_ARGS, *WEBRTC_LOOPBACK_ARGS]
    if video is not None:
        args.append(f"--use-file-for-fake-video-capture={_existing(video)}")
    if audio is not None:
        suffix = "" if loop_audio else "%noloop"
        args.append(f"--use-file-for-fake-audio-capture={_existing(audio)}{suffix}")
    args.extend(extra)
    return args


def _existing(path: str | os.PathLike[str]) -> Path:
    resolved = Path(path).resolve()
    if not resolved.is_file():
        # Chromium would silently fall back to (or crash on) a missing file.
        raise FileNotFoundError(f"fake capture file not found: {resolved}")
    if "%" in resolved.name or "," in str(resolved):
        raise ValueError(f"fake capture path must not contain '%' or ',': {resolved}")
    return resolved


def _check_executable(path: str) -> None:
    if not os.access(path, os.X_OK):
        raise FileNotFoundError(f"Chromium not found at {path} (apt-get install chromium)")


@asynccontextmanager
async def launch_browser(
    video: str | os.PathLike[str] | None = None,
    audio: str | os.PathLike[str] | None = None,
    headless: bool = True,
    *,
    loop_audio: bool = True,
    extra_args: Sequence[str] = (),
    executable_path: str = CHROMIUM,
    timeout_ms: float = 60_000,
    speech: PrivateSpeechDispatcher | None = None,
) -> AsyncIterator[Browser]:
    """Launch Chromium with the fake camera/microphone files; yields a Playwright Browser.

    ``speech``: a running `PrivateSpeechDispatcher` gives the page's speech synthesis a
    voice (without one, ``speechSynthesis.speak`` fails with ``synthesis-failed``)."""
    _check_executable(executable_path)
    extra = [*extra_args, CHROMIUM_SWITCH] if speech is not None else extra_args
    args = chromium_args(video, audio, loop_audio=loop_audio, extra=extra)
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=executable_path,
            headless=headless,
            args=args,
            timeout=timeout_ms,
            env=speech.environ() if speech is not None else None,
        )
        try:
            yield browser
        finally:
            await browser.close()


@dataclass
class LoggedPage:
    """A page plus everything it logged: console messages and uncaught page errors."""

    page: Page
    context: BrowserContext
    console: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    def _on_console(self, msg: ConsoleMessage) -> None:
        loc = msg.location or {}
        where = f" ({loc.get('url', '')}:{loc.get('lineNumber', '')})" if loc.get("url") else ""
        self.console.append(
            f"[{time.monotonic() - self.started:7.3f}s] {msg.type}: {msg.text}{where}"
        )

    def _on_error(self, error: Exception) -> None:
        self.errors.append(f"[{time.monotonic() - self.started:7.3f}s] {error}")

    def describe(self, limit: int = 60) -> str:
        """The collected logs, for an assertion or exception message."""
        lines = [f"page: {self.page.url}"]
        lines.append(f"page errors ({len(self.errors)}):")
        lines += [f"  {e}" for e in self.errors[-limit:]]
        lines.append(f"console ({len(self.console)}):")
        lines += [f"  {c}" for c in self.console[-limit:]]
        return "\n".join(lines)


async def new_logged_page(
    browser: Browser,
    url: str | None = None,
    *,
    permissions: Sequence[str] = ("camera", "microphone"),
    default_timeout_ms: float = 30_000,
) -> LoggedPage:
    """Open a page in a fresh context (camera/microphone granted) that records its logs.

    Close it with ``await lp.context.close()``, or use ``logged_page`` instead."""
    context = await browser.new_context(permissions=list(permissions))
    context.set_default_timeout(default_timeout_ms)
    page = await context.new_page()
    lp = LoggedPage(page=page, context=context)
    page.on("console", lp._on_console)
    page.on("pageerror", lp._on_error)
    page.on("crash", lambda _page: lp.errors.append("page crashed"))
    if url is not None:
        await page.goto(url)
    return lp


@asynccontextmanager
async def logged_page(
    browser: Browser,
    url: str | None = None,
    *,
    permissions: Sequence[str] = ("camera", "microphone"),
    default_timeout_ms: float = 30_000,
) -> AsyncIterator[LoggedPage]:
    """``new_logged_page`` as a context manager that closes the context afterwards."""
    lp = await new_logged_page(
        browser, url, permissions=permissions, default_timeout_ms=default_timeout_ms
    )
    try:
        yield lp
    finally:
        await lp.context.close()
