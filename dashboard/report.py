"""A session's report as one self-contained HTML file (inline CSS and SVG, no external
assets, no scripts), and as PDF where Playwright and a Chromium are installed.

`render_html(view, now_ms)` is pure (it takes the view and "now"); `html_to_pdf` prints that
HTML with headless Chromium through Playwright (a dev dependency of this project: present
where the tests run; the dashboard offers PDF only when `pdf_available()` says so).
"""

from __future__ import annotations

import html
import os
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from dashboard import aggregate as agg
from stream import contract

EMOTION_COLORS: dict[str, str] = {
    "anger": "#d62728",
    "anxiety": "#ff7f0e",
    "embarrass": "#e377c2",
    "happy": "#2ca02c",
    "normal": "#7fa7c9",
    "pain": "#8c564b",
    "sad": "#9467bd",
}
BAND_COLORS = {"good": "#2e7d32", "normal": "#b7791f", "bad": "#c62828"}
METRIC_LABELS = (
    ("duration_s", "duration", "{:.1f} s"),
    ("words_per_minute", "pace", "{:.0f} words/min"),
    ("syllables_per_second", "pace (syllables)", "{:.1f} syll/s"),
    ("word_count", "words", "{:.0f}"),
    ("filler_count", "filler words", "{:.0f}"),
    ("pause_count", "pauses", "{:.0f}"),
    ("longest_pause_s", "longest pause", "{:.1f} s"),
)


def esc(value: Any) -> str:
    """Text for this module's HTML document. Not enough inside Streamlit Markdown (the
    dashboard): there `dashboard.markdown_text.literal` is the escape."""
    return html.escape("" if value is None else str(value), quote=True)


def clock(ms: float | None) -> str:
    if not ms:
        return "–"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def mmss(seconds: float) -> str:
    seconds = max(0, round(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}"


def metric_items(metrics: contract.SpeakingMetrics | None) -> list[tuple[str, str]]:
    """An answer's speaking metrics as (label, formatted value), in a fixed order, as
    measured (the rates are the merged answer's, never recomputed here)."""
    if metrics is None:
        return []
    out = [(label, fmt.format(getattr(metrics, key))) for key, label, fmt in METRIC_LABELS]
    if metrics.filler_words:
        out.append(("fillers heard", ", ".join(metrics.filler_words[:12])))
    return out


def band_badge(band: str | None, score: float | None = None) -> str:
    if not band:
        return '<span class="badge muted">no face data</span>'
    color = BAND_COLORS.get(band, "#555")
    text = f"{band}" + (f" · {score:.1f}" if score is not None else "")
    return f'<span class="badge" style="background:{color}">{esc(text)}</span>'


# --------------------------------------------------------------------------- SVG timeline


def timeline_svg(view: agg.SessionView, now_ms: float, width: int = 960) -> str:
    """The emotion mix over time (stacked shares), valence below, answer spans shaded."""
    t0, t1 = agg.session_span(view, now_ms)
    span = t1 - t0
    bin_ms = agg.auto_bin_ms(span, target_bins=240)
    bins = agg.bins(view.points, t0, t1, bin_ms)
    left, right, top = 44, 12, 22
    mix_h, gap, val_h, axis_h = 150, 16, 64, 22
    height = top + mix_h + gap + val_h + axis_h
    plot_w = width - left - right

    def x(ms: float) -> float:
        return left + (ms - t0) / span * plot_w

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'width="100%" role="img" aria-label="emotion timeline" class="timeline">',
        f'<rect x="{left}" y="{top}" width="{plot_w}" height="{mix_h}" fill="#f4f6f8"/>',
        f'<rect x="{left}" y="{top + mix_h + gap}" width="{plot_w}" height="{val_h}" '
        'fill="#f4f6f8"/>',
    ]
    # Stacked shares: one polygon per class, bins without faces left blank.
    lower = [0.0] * len(bins)
    for emotion in agg.EMOTIONS:
        upper = []
        for i, b in enumerate(bins):
            share = (b.counts.get(emotion, 0) / b.faces) if b.faces else 0.0
            upper.append(lower[i] + share)
        segments = _runs([b.faces > 0 for b in bins])
        for a, z in segments:
            pts_top = []
            pts_bottom = []
            for i in range(a, z):
                for edge in (bins[i].start_ms, bins[i].end_ms):
                    xe = x(min(edge, t1))
                    pts_top.append(f"{xe:.1f},{top + mix_h * (1 - upper[i]):.1f}")
                    pts_bottom.append(f"{xe:.1f},{top + mix_h * (1 - lower[i]):.1f}")
            if any(upper[i] > lower[i] for i in range(a, z)):
                points = " ".join(pts_top + pts_bottom[::-1])
                parts.append(
                    f'<polygon points="{points}" fill="{EMOTION_COLORS[emotion]}" '
                    f'fill-opacity="0.85"><title>{esc(emotion)}</title></polygon>'
                )
        lower = upper
    # Valence line.
    zero = top + mix_h + gap + val_h / 2
    parts.append(
        f'<line x1="{left}" x2="{left + plot_w}" y1="{zero}" y2="{zero}" stroke="#999" '
        'stroke-dasharray="3,3"/>'
    )
    for a, z in _runs([b.valence is not None for b in bins]):
        pts = []
        for i in range(a, z):
            b = bins[i]
            xm = x((b.start_ms + min(b.end_ms, t1)) / 2)
            pts.append(f"{xm:.1f},{zero - (b.valence or 0.0) * val_h / 2:.1f}")
        if len(pts) == 1:
            px, py = pts[0].split(",")
            parts.append(f'<circle cx="{px}" cy="{py}" r="2" fill="#333"/>')
        else:
            parts.append(
                f'<polyline points="{" ".join(pts)}" fill="none" stroke="#333" stroke-width="1.5"/>'
            )
    # Question asks and answer spans.
    for q in view.questions:
        if q.answer_start_ms is not None and q.answer_end_ms is not None:
            xa, xz = x(q.answer_start_ms), x(max(q.answer_end_ms, q.answer_start_ms))
            parts.append(
                f'<rect x="{xa:.1f}" y="{top}" width="{max(1.5, xz - xa):.1f}" '
                f'height="{mix_h + gap + val_h}" fill="#1a73e8" fill-opacity="0.10" '
                f'stroke="#1a73e8" stroke-opacity="0.6"><title>answer to {esc(q.label)}'
                "</title></rect>"
            )
        if q.asked_ms is not None:
            xq = x(q.asked_ms)
            parts.append(
                f'<line x1="{xq:.1f}" x2="{xq:.1f}" y1="{top - 4}" '
                f'y2="{top + mix_h + gap + val_h}" stroke="#1a1a1a" stroke-dasharray="4,3"/>'
                f'<text x="{xq + 3:.1f}" y="{top - 8}" font-size="12" font-weight="600" '
                f'fill="#1a1a1a">{esc(q.label)}</text>'
            )
    # Axes.
    parts.append(
        f'<text x="{left - 6}" y="{top + 10}" font-size="10" text-anchor="end">100%</text>'
        f'<text x="{left - 6}" y="{top + mix_h}" font-size="10" text-anchor="end">0%</text>'
        f'<text x="{left - 6}" y="{top + mix_h + gap + 10}" font-size="10" '
        'text-anchor="end">+</text>'
        f'<text x="{left - 6}" y="{top + mix_h + gap + val_h}" font-size="10" '
        'text-anchor="end">−</text>'
        f'<text x="{left - 30}" y="{zero + 4}" font-size="10">val.</text>'
    )
    ticks = _ticks(span / 1000.0)
    base = top + mix_h + gap + val_h
    for s in ticks:
        xt = x(t0 + s * 1000)
        parts.append(
            f'<line x1="{xt:.1f}" x2="{xt:.1f}" y1="{base}" y2="{base + 4}" stroke="#666"/>'
            f'<text x="{xt:.1f}" y="{base + 16}" font-size="10" text-anchor="middle">'
            f"{mmss(s)}</text>"
        )
    if not view.points:
        parts.append(
            f'<text x="{left + plot_w / 2}" y="{top + mix_h / 2}" text-anchor="middle" '
            'font-size="13" fill="#777">no emotion results</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _runs(flags: Sequence[bool]) -> list[tuple[int, int]]:
    runs, start = [], None
    for i, flag in enumerate([*flags, False]):
        if flag and start is None:
            start = i
        elif not flag and start is not None:
            runs.append((start, i))
            start = None
    return runs


def _ticks(span_s: float) -> list[float]:
    for step in (5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600):
        if span_s / step <= 10:
            break
    return [i * step for i in range(int(span_s // step) + 1)]


def legend_html() -> str:
    items = "".join(
        f'<span class="key"><i style="background:{c}"></i>{esc(e)}</span>'
        for e, c in EMOTION_COLORS.items()
    )
    return (
        f'<div class="legend">{items}<span class="key"><i class="span"></i>answer</span>'
        '<span class="key">— valence (positive − negative)</span></div>'
    )


def words_html(
    view: agg.SessionView, t: agg.TranscriptView, escape: Callable[[Any], str] = esc
) -> str:
    """A transcript with each word tinted by the emotion seen while it was said. `escape`
    makes a word safe where the HTML goes (`esc` for an HTML document; the dashboard, whose
    HTML sits inside Markdown, passes `markdown_text.literal`)."""
    out = []
    for word in agg.align_words(t, view.points):
        if word.label in agg.NEGATIVE:
            color = EMOTION_COLORS[word.label]
            out.append(
                f'<span class="w neg" style="border-color:{color}" title="{esc(word.label)}">'
                f"{escape(word.text)}</span>"
            )
        elif word.label is not None:
            out.append(f'<span class="w" title="{esc(word.label)}">{escape(word.text)}</span>')
        else:
            out.append(f'<span class="w none">{escape(word.text)}</span>')
    return " ".join(out)


# --------------------------------------------------------------------------- the page

CSS = """
body{font:14px/1.5 -apple-system,'Segoe UI',Roboto,'Noto Sans KR','Apple SD Gothic Neo',
sans-serif;color:#1d2330;margin:0;background:#fff}
main{max-width:1000px;margin:0 auto;padding:28px}
h1{font-size:24px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid
#e3e6ea;padding-bottom:4px}h3{font-size:16px;margin:18px 0 6px}
.sub{color:#5f6b7a}.grid{display:grid;grid-template-columns:repeat(4,1fr);gap:12px;margin:16px 0}
.tile{border:1px solid #e3e6ea;border-radius:8px;padding:10px 12px}.tile b{display:block;
font-size:20px}.tile span{color:#5f6b7a;font-size:12px}
table{border-collapse:collapse;width:100%;margin:6px 0}td,th{border-bottom:1px solid #eef0f2;
padding:5px 8px;text-align:left;vertical-align:top}th{background:#f7f8fa;font-weight:600}
.badge{display:inline-block;color:#fff;border-radius:10px;padding:1px 9px;font-size:12px;
font-weight:600}.badge.muted{background:#9aa3ad}.badge.fu{background:#6b4fbb}
.q{border:1px solid #e3e6ea;border-radius:10px;padding:12px 16px;margin:14px 0;
break-inside:avoid}.cols{display:grid;grid-template-columns:3fr 2fr;gap:16px}
.summary{background:#f7f8fa;border-radius:8px;padding:8px 12px}.summary li{margin:2px 0}
.w.neg{border-bottom:3px solid;padding-bottom:1px}.w.none{color:#8a94a0}
.legend{display:flex;flex-wrap:wrap;gap:12px;font-size:12px;margin:4px 0 0}.key i{display:
inline-block;width:12px;height:12px;border-radius:2px;margin-right:4px;vertical-align:-1px}
.key i.span{background:rgba(26,115,232,.15);border:1px solid #1a73e8}
.note{color:#5f6b7a;font-size:12px}details{margin:6px 0}.err{color:#c62828}
"""


def render_html(view: agg.SessionView, now_ms: float) -> str:
    """The whole report as one HTML document."""
    summaries = agg.answer_summaries(view)
    health = agg.health(view, now_ms)
    overall_mix = agg.emotion_mix(view.points)
    score = view.score
    t0, t1 = agg.session_span(view, now_ms)
    state = agg.status(view, now_ms)
    answered = [q for q in view.questions if q.answer_start_ms is not None]
    paces = [q.metrics.words_per_minute for q in answered if q.metrics and q.metrics.rate_s]
    tiles = [
        (band_badge(score.band, score.score) if score else "–", "emotion score (session)"),
        (f"{overall_mix.positive:.0%}" if overall_mix.faces else "–", "positive faces"),
        (f"{len(answered)} / {len(view.questions)}", "questions answered"),
        (mmss((t1 - t0) / 1000), "duration" if state == "ended" else "so far"),
    ]
    if paces:
        tiles[3] = (mmss((t1 - t0) / 1000), f"duration · avg {sum(paces) / len(paces):.0f} wpm")
    out = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>intervue report — {esc(view.session)}</title><style>{CSS}</style></head>",
        "<body><main>",
        f"<h1>Interview report — {esc(view.title())}</h1>",
        f"<div class='sub'>session <code>{esc(view.session)}</code> · started "
        f"{esc(clock(view.started_ms or view.first_ms))} · {esc(state)}"
        + (f" ({esc(view.end_reason)})" if view.end_reason else "")
        + (f" · questions by the {esc(view.engine)} engine" if view.engine else "")
        + f" · report made {esc(clock(now_ms))}</div>",
        "<div class='grid'>"
        + "".join(f"<div class='tile'><b>{v}</b><span>{esc(k)}</span></div>" for v, k in tiles)
        + "</div>",
    ]
    if view.profile is not None:
        p = view.profile
        out.append("<h2>Profile</h2><table>")
        for label, value in (
            ("Job title", p.job_title),
            ("Experience", f"{p.years} years"),
            ("Company", p.company),
            ("Language", "한국어" if p.language == "ko" else "English"),
        ):
            out.append(f"<tr><th>{esc(label)}</th><td>{esc(value)}</td></tr>")
        out.append(
            "<tr><th>Self-introduction</th><td><details><summary>"
            f"{len(p.self_intro):,} characters</summary><p>{esc(p.self_intro)}</p>"
            "</details></td></tr></table>"
        )
    out.append("<h2>Emotion timeline</h2>")
    out.append(timeline_svg(view, now_ms))
    out.append(legend_html())
    if overall_mix.faces:
        out.append(
            "<p class='note'>Whole session: "
            + ", ".join(
                f"{esc(e)} {overall_mix.shares[e]:.0%}"
                for e in sorted(agg.EMOTIONS, key=lambda k: -overall_mix.shares[k])
                if overall_mix.shares[e] > 0
            )
            + f" over {overall_mix.faces:,} frames with a face.</p>"
        )
    out.append("<h2>Questions and answers</h2>")
    if not view.questions:
        out.append("<p class='note'>No questions yet.</p>")
    for q in view.questions:
        out.append(_question_html(view, q, summaries.get(q.index)))
    pre = [t for t in view.transcripts if t.question < 0]
    if pre:
        out.append("<h3>Before the first question</h3>")
        out += [f"<p>{words_html(view, t)}</p>" for t in pre]
    if view.errors:
        out.append("<h2>Interviewer notes</h2><ul>")
        out += [f"<li class='err'>{esc(e.stage)}: {esc(e.message)}</li>" for e in view.errors]
        out.append("</ul>")
    out.append(_health_html(health))
    out.append(
        "<p class='note'>intervue is a practice tool. Webcam emotion estimates are noisy and "
        "say nothing about competence; do not use them for hiring decisions.</p>"
    )
    out.append("</main></body></html>")
    return "\n".join(out)


def _question_html(
    view: agg.SessionView, q: agg.QuestionView, summary: agg.AnswerSummary | None
) -> str:
    out = ["<div class='q'>"]
    badge = " <span class='badge fu'>interviewer's follow-up</span>" if q.follow_up else ""
    if q.attempt > 1:
        badge += f" <span class='badge'>attempt {q.attempt}</span>"
    band = band_badge(summary.band, summary.score) if summary else ""
    out.append(f"<h3>{esc(q.label)}{badge} {band}</h3><p><b>{esc(q.text)}</b></p>")
    transcripts = agg.answer_transcripts(view, q)
    answer = (
        " ".join(words_html(view, t) for t in transcripts) if transcripts else esc(q.answer or "")
    )
    if q.no_answer:
        answer = "<span class=note>no answer was heard</span>"
    side = []
    if summary is not None:
        side.append(f"<div class='summary'><b>{esc(summary.headline)}</b><ul>")
        side += [f"<li>{esc(n)}</li>" for n in summary.notes]
        side.append("</ul></div>")
    items = metric_items(q.metrics)
    if items:
        side.append(
            "<table>"
            + "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in items)
            + "</table>"
        )
    out.append(
        f"<div class='cols'><div>{answer or '<span class=note>no answer yet</span>'}</div>"
        f"<div>{''.join(side)}</div></div>"
    )
    if q.rows:
        out.append("<table><tr><th>Criterion</th><th>Rating</th><th>Reason</th></tr>")
        out += [
            f"<tr><td>{esc(c)}</td><td>{esc(r)}</td><td>{esc(why)}</td></tr>"
            for c, r, why in q.rows
        ]
        out.append("</table>")
    evaluation = q.evaluation or contract.Evaluation()
    if evaluation.tips:
        tips = "".join(f"<li>{esc(t)}</li>" for t in evaluation.tips)
        out.append(f"<b>Tips</b><ol>{tips}</ol>")
    if evaluation.model_answer:
        out.append(
            "<details><summary>Model answer</summary>"
            f"<p>{esc(evaluation.model_answer)}</p></details>"
        )
    if q.engine:
        rules = (
            f" ({esc(', '.join(evaluation.rule_based))} by the fixed rules)"
            if evaluation.rule_based
            else ""
        )
        out.append(f"<div class='note'>evaluated by the {esc(q.engine)} engine{rules}</div>")
    if q.end_reason:
        reason = END_REASONS.get(q.end_reason, q.end_reason)
        out.append(f"<div class='note'>answer ended: {esc(reason)}</div>")
    if q.earlier:
        out.append(
            f"<details><summary>Earlier attempts ({len(q.earlier)}; the latest one counts)"
            "</summary>"
        )
        for earlier in q.earlier:
            overall = f" — {esc(earlier.rows[0][1])}" if earlier.rows else ""
            words = agg.answer_transcripts(view, earlier)
            text = (
                " ".join(words_html(view, t) for t in words)
                if words
                else esc(earlier.answer) or "<span class=note>no answer heard</span>"
            )
            out.append(f"<p><b>Attempt {earlier.attempt}</b>{overall}: {text}</p>")
        out.append("</details>")
    out.append("</div>")
    return "".join(out)


#: How an answer turn ended, in words (AnswerEnded.reason).
END_REASONS = {
    "done": "the candidate pressed Done",
    "silence": "a long silence",
    "time_cap": "the time limit",
    "session_end": "the session ended",
}


def _fmt(value: float | None, fmt: str) -> str:
    return fmt.format(value) if value is not None else "–"


def _health_html(h: agg.Health) -> str:
    rows = [
        ("analysed frames per second", _fmt(h.fps, "{:.1f}")),
        ("emotion results", f"{h.results:,}"),
        ("frames without a face", _fmt(h.no_face_share, "{:.0%}")),
        (
            "dropped frames",
            "–"
            if h.frames_dropped is None
            else f"{h.frames_dropped:,} ({'gateway count' if h.dropped_source == 'gateway' else 'estimated from gaps'})",  # noqa: E501
        ),
        ("glass-to-result latency p50", _fmt(h.latency_p50_ms, "{:.0f} ms")),
        ("glass-to-result latency p95", _fmt(h.latency_p95_ms, "{:.0f} ms")),
        ("timed by the browser's capture clock", _fmt(h.browser_clock_share, "{:.0%}")),
        ("malformed events skipped", f"{h.malformed}"),
    ]
    rows += [(f"gateway: {k}", f"{v:g}") for k, v in sorted(h.stats.items())]
    return (
        "<h2>Pipeline health</h2><table>"
        + "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in rows)
        + "</table>"
    )


# --------------------------------------------------------------------------- PDF


def pdf_available() -> bool:
    """Playwright importable and a Chromium it can drive (INTERVUE_CHROMIUM or system)."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return False
    return os.access(_chromium(), os.X_OK)


def _chromium() -> str:
    return os.environ.get("INTERVUE_CHROMIUM", "/usr/bin/chromium")


def html_to_pdf(document: str, timeout_s: float = 60.0) -> bytes:
    """Print the HTML to A4 PDF with headless Chromium (in a thread of its own, so that
    it works from threads that run an asyncio loop)."""
    result: dict[str, Any] = {}

    def work() -> None:
        try:
            from playwright.sync_api import sync_playwright

            with sync_playwright() as pw:
                browser = pw.chromium.launch(
                    executable_path=_chromium(),
                    headless=True,
                    args=["--no-sandbox", "--disable-gpu"],
                )
                try:
                    page = browser.new_page()
                    page.set_content(document, wait_until="load")
                    result["pdf"] = page.pdf(
                        format="A4",
                        print_background=True,
                        margin={"top": "12mm", "bottom": "12mm", "left": "10mm", "right": "10mm"},
                    )
                finally:
                    browser.close()
        except Exception as exc:
            result["error"] = exc

    thread = threading.Thread(target=work, name="report-pdf", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if "pdf" in result:
        return result["pdf"]
    raise RuntimeError(f"PDF rendering failed: {result.get('error', 'timed out')}")
