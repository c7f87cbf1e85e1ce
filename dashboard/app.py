"""The interviewer dashboard (Streamlit). Started by `intervue dashboard` (dashboard.run).

Pages (one script; the open session lives in the URL as ``?session=<id>``):

- overview: every live session as a card (candidate and job, current question, speaking
  or silent, live emotion score and band, the emotion mix of the last 30 s, pipeline
  health), refreshed in an ``st.fragment(run_every=…)``; finished sessions below;
- session: emotion timeline per class and valence with question/answer spans, the emotion
  mix as a stacked area, each answer's transcript with its emotion summary beside it,
  evaluations, speaking metrics, score band per answer, health; a follow-up form while the
  session is live; the HTML (and PDF) report.

Events come from one `EventStore` per NATS URL (``st.cache_resource``), which follows the
events stream in a background thread; nothing here loops or blocks on NATS.
"""

from __future__ import annotations

import importlib.util
import sys
import time
from collections import OrderedDict
from datetime import datetime
from pathlib import Path

try:
    import dashboard  # noqa: F401
except ImportError:  # `streamlit run dashboard/app.py` from a checkout without an install
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import altair as alt
import pandas as pd
import streamlit as st

from dashboard import aggregate as agg
from dashboard import auth, login_limit, report
from dashboard.markdown_text import literal, literal_paragraphs
from dashboard.settings import DashboardSettings
from dashboard.store import EventStore, shared_store
from stream import bus, contract
from stream.client_address import client_address
from stream.settings import BusSettings

STYLE = """
<style>
.iv-card-title{font-weight:650;font-size:1.05rem;line-height:1.3}
.iv-sub{color:#6b7480;font-size:.82rem}
.iv-pill{display:inline-block;border-radius:999px;padding:1px 10px;font-size:.78rem;
  font-weight:600;margin-right:6px;color:#fff}
.iv-live{background:#d93025}.iv-ended{background:#5f6b7a}.iv-stalled{background:#b7791f}
.iv-speaking{background:#188038}.iv-silent{background:#9aa3ad}
.iv-score{font-size:2rem;font-weight:700;line-height:1.1;margin-right:8px}
.iv-band{display:inline-block;border-radius:8px;padding:2px 10px;color:#fff;font-weight:650;
  vertical-align:super;font-size:.85rem}
.iv-bar{display:flex;height:14px;border-radius:7px;overflow:hidden;background:#eceff3;
  margin:6px 0 2px}
.iv-bar div{height:100%}
.iv-q{font-size:.9rem;margin:6px 0;min-height:2.6em}
.iv-health{color:#4a5360;font-size:.8rem}
.iv-summary{background:#f5f7fa;border-radius:8px;padding:8px 12px;font-size:.9rem}
.iv-summary ul{margin:4px 0 0 0;padding-left:18px}
.w.neg{border-bottom:3px solid;padding-bottom:1px}.w.none{color:#8a94a0}
.iv-row{display:grid;grid-template-columns:5.5em 1fr 3em;align-items:center;gap:6px;
  font-size:.85rem;margin:3px 0}
.iv-track{background:#eceff3;border-radius:4px;height:10px;overflow:hidden}
.iv-track div{height:100%}
.iv-legend{display:flex;flex-wrap:wrap;gap:10px;font-size:.75rem;color:#4a5360}
.iv-legend i{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:3px}
</style>
"""


# --------------------------------------------------------------------------- resources


@st.cache_resource(show_spinner=False)
def get_store(nats_url: str, archive_after_s: float = 1800.0, keep_loaded: int = 4) -> EventStore:
    """One follower of the events stream per NATS URL, shared by every browser session."""
    store = shared_store(nats_url, archive_after_s=archive_after_s, keep_loaded=keep_loaded)
    store.wait_caught_up(3.0)
    return store


def store_for(nats_url: str, settings: DashboardSettings | None = None) -> EventStore:
    args = (settings.archive_after_s, settings.loaded_sessions) if settings else ()
    store = get_store(nats_url, *args)
    if not store.running:  # stopped (by a test, or its thread died): start a new one
        get_store.clear()
        store = get_store(nats_url, *args)
    return store


@st.cache_resource(show_spinner=False)
def _view_cache() -> dict[tuple[int, str], tuple[int, agg.SessionView]]:
    return {}


def get_view(store: EventStore, session: str) -> agg.SessionView:
    """The folded view of a session, recomputed only when its events changed."""
    cache = _view_cache()
    key = (id(store), session)
    version = store.version(session)
    hit = cache.get(key)
    if hit is not None and hit[0] == version:
        return hit[1]
    version, events = store.events(session)
    view = agg.fold(events, session)
    cache[key] = (version, view)
    return view


@st.cache_resource(show_spinner=False)
def _full_view_cache() -> OrderedDict[tuple[int, str], tuple[int, agg.SessionView]]:
    return OrderedDict()


def get_full_view(store: EventStore, session: str) -> agg.SessionView:
    """The view over every event of the session: for an archived one (ended a while ago,
    per-frame events out of memory) read back from JetStream; a few are kept."""
    if not store.archived(session):
        return get_view(store, session)
    version, events = store.full_events(session)
    cache = _full_view_cache()
    key = (id(store), session)
    hit = cache.get(key)
    if hit is not None and hit[0] == version:
        cache.move_to_end(key)
        return hit[1]
    view = agg.fold(events, session)
    cache[key] = (version, view)
    while len(cache) > store.keep_loaded:
        cache.popitem(last=False)
    return view


def session_view(store: EventStore, session: str) -> agg.SessionView:
    """The session page's view: every event, or when an archived session cannot be read
    back, its summary with a warning."""
    try:
        return get_full_view(store, session)
    except bus.BusUnavailableError as exc:
        st.warning(f"Showing this session's summary only: {literal(exc)}")
        return get_view(store, session)


def now_ms() -> float:
    return contract.now_ms()


def hhmmss(ms: float | None) -> str:
    if not ms:
        return "–"
    return datetime.fromtimestamp(ms / 1000).strftime("%H:%M:%S")


def open_session(session: str | None) -> None:
    if session:
        st.query_params["session"] = session
    else:
        st.query_params.pop("session", None)


# --------------------------------------------------------------------------- login

SCOPE_WORDS = {
    "account": "for this user name",
    "address": "from your address",
    "global": "on this dashboard",
}


def login_limiter(settings: DashboardSettings) -> login_limit.LoginLimiter:
    """The server process's one limiter for these settings: it outlives reloads, tabs and
    browser sessions (and Streamlit's cache clearing, see dashboard/login_limit.py)."""
    return login_limit.shared_limiter(
        login_limit.LoginPolicy(
            max_failures=settings.max_failed_logins,
            lockout_s=settings.lockout_s,
            max_lockout_s=max(settings.lockout_max_s, settings.lockout_s),
            global_max_failures=settings.failed_logins_per_minute,
            global_window_s=60.0,
        )
    )


def this_client_address(settings: DashboardSettings) -> str:
    """The address this browser session connects from (its websocket's peer, which
    Streamlit gives as None for a loopback connection); X-Forwarded-For is believed only
    hop by hop from `settings.trusted_proxies`."""
    try:
        peer = st.context.ip_address or "127.0.0.1"
        forwarded = st.context.headers.get_all("X-Forwarded-For")
    except Exception:  # no client context (a bare script run)
        return "?"
    return client_address(peer, forwarded, settings.trusted_proxies)


def login_gate(settings: DashboardSettings) -> str:
    """The logged-in user's name; stops the script at a login form until then."""
    mode = settings.auth
    oidc = auth.oidc_configured(st.secrets)
    if mode == "oidc" or (mode == "auto" and oidc):
        problem = ""
        if not oidc:
            problem = (
                "INTERVUE_DASHBOARD_AUTH is oidc but .streamlit/secrets.toml has no [auth] "
                "section with a redirect_uri (see docs/dashboard.md)."
            )
        elif importlib.util.find_spec("authlib") is None:
            problem = "OIDC login needs Authlib: pip install 'Authlib>=1.3.2'."
        if problem:
            st.error(problem)
            st.stop()
        if not st.user.is_logged_in:
            st.title("intervue · interviewer dashboard")
            st.button("Log in", on_click=st.login, type="primary", key="oidc-login")
            st.stop()
        return str(st.user.get("email") or st.user.get("name") or "interviewer")
    user = st.session_state.get("user")
    if user:
        return str(user)
    credentials = auth.load_credentials(settings)
    _, middle, _ = st.columns([1, 1.2, 1])
    with middle:
        st.title("intervue")
        st.caption("Interviewer dashboard — log in to see live sessions.")
        if credentials is None:
            st.error(
                "No dashboard password is configured. Set INTERVUE_DASHBOARD_PASSWORD_HASH "
                "or INTERVUE_DASHBOARD_PASSWORD_FILE, or start the dashboard through "
                "`intervue dashboard` / `intervue up`, which generate one and print it."
            )
            st.stop()
        with st.form("login"):
            name = st.text_input("User name", value=settings.username, key="login-user")
            password = st.text_input("Password", type="password", key="login-password")
            submitted = st.form_submit_button("Log in", type="primary", key="login-submit")
        if submitted:
            outcome = login_limiter(settings).attempt(
                name, this_client_address(settings), lambda: credentials.check(name, password)
            )
            if outcome.ok:
                st.session_state["user"] = name.strip()
                st.rerun()
            elif outcome.refused:
                st.error(
                    f"Too many failed logins {SCOPE_WORDS[outcome.scope or 'global']}: "
                    "the password was not checked. Try again in "
                    f"{login_limit.wait_words(outcome.retry_after_s)}."
                )
            elif outcome.retry_after_s > 0:
                st.error(
                    "Wrong user name or password. Too many failed logins "
                    f"{SCOPE_WORDS[outcome.scope or 'global']}: try again in "
                    f"{login_limit.wait_words(outcome.retry_after_s)}."
                )
            else:
                st.error("Wrong user name or password.")
    st.stop()
    raise AssertionError("unreachable")


# --------------------------------------------------------------------------- pieces


def band_html(band: str | None, score: float | None) -> str:
    if score is None or band is None:
        return '<span class="iv-score">–</span><span class="iv-band" style="background:#9aa3ad">no face yet</span>'  # noqa: E501
    color = report.BAND_COLORS.get(band, "#555")
    return (
        f'<span class="iv-score">{score:.1f}</span>'
        f'<span class="iv-band" style="background:{color}">{literal(band)}</span>'
    )


def mix_html(mix: agg.Mix, window_s: int = 30) -> str:
    if not mix.faces:
        text = "no face" if mix.frames else "no emotion results"
        return f'<div class="iv-bar"></div><div class="iv-sub">last {window_s} s: {text}</div>'
    segments = "".join(
        f'<div style="width:{mix.shares[e] * 100:.1f}%;background:{report.EMOTION_COLORS[e]}" '
        f'title="{e} {mix.shares[e]:.0%}"></div>'
        for e in agg.EMOTIONS
        if mix.shares[e] > 0
    )
    top = sorted(agg.EMOTIONS, key=lambda e: -mix.shares[e])[:3]
    words = " · ".join(f"{e} {mix.shares[e]:.0%}" for e in top if mix.shares[e] > 0)
    return (
        f'<div class="iv-bar">{segments}</div>'
        f'<div class="iv-sub">last {window_s} s: {words} ({mix.positive:.0%} positive)</div>'
    )


def mix_rows_html(mix: agg.Mix) -> str:
    """One labelled bar per class seen, longest first."""
    if not mix.faces:
        return '<div class="iv-sub">no face seen</div>'
    rows = []
    for e in sorted(agg.EMOTIONS, key=lambda k: -mix.shares[k]):
        share = mix.shares[e]
        if share <= 0:
            continue
        rows.append(
            f'<div class="iv-row"><span>{e}</span><div class="iv-track"><div style="width:'
            f'{share * 100:.1f}%;background:{report.EMOTION_COLORS[e]}"></div></div>'
            f"<span>{share:.0%}</span></div>"
        )
    return (
        "".join(rows) + f'<div class="iv-sub">{mix.faces:,} frames with a face · '
        f"{mix.positive:.0%} positive</div>"
    )


def health_line(h: agg.Health) -> str:
    parts = []
    parts.append(f"{h.fps:.1f} fps" if h.fps is not None else "– fps")
    if h.frames_dropped is not None:
        est = "" if h.dropped_source == "gateway" else " (est.)"
        parts.append(f"{h.frames_dropped:,} dropped{est}")
    if h.latency_p50_ms is not None:
        parts.append(f"{h.latency_p50_ms:.0f} ms glass→result p50")
    if h.malformed:
        parts.append(f"{h.malformed} malformed")
    return " · ".join(parts)


def legend_html() -> str:
    return (
        '<div class="iv-legend">'
        + "".join(
            f'<span><i style="background:{c}"></i>{e}</span>'
            for e, c in report.EMOTION_COLORS.items()
        )
        + "</div>"
    )


def status_banner(store: EventStore) -> None:
    s = store.status()
    if s.state == "unavailable":
        since = datetime.fromtimestamp(s.since).strftime("%H:%M:%S")
        st.error(
            f"**JetStream unavailable** since {since}: {literal(s.detail)}. Showing what was "
            "received before; reconnecting automatically.",
            icon="⚠️",
        )
    elif s.state == "connecting":
        st.info("Connecting to JetStream…", icon="⏳")
    elif s.state == "no-stream":
        st.info("Connected. No session has been recorded yet.", icon="ℹ️")


# --------------------------------------------------------------------------- overview


def overview(store: EventStore, settings: DashboardSettings) -> None:
    st.title("Interview sessions")

    @st.fragment(run_every=settings.refresh_s)
    def live_panel() -> None:
        status_banner(store)
        now = now_ms()
        stale = settings.stale_after_s * 1000
        cards = []
        for session in store.sessions():
            view = get_view(store, session)
            if agg.status(view, now, stale) == "live":
                cards.append(agg.card(view, now, stale))
        cards.sort(key=lambda c: c.started_ms or 0.0, reverse=True)
        st.subheader(f"Live now · {len(cards)}")
        if not cards:
            st.caption("No live session. Sessions appear here as soon as a candidate starts.")
        for row in range(0, len(cards), 3):
            columns = st.columns(3)
            for column, c in zip(columns, cards[row : row + 3], strict=False):
                with column, st.container(border=True):
                    render_card(c)

    live_panel()

    @st.fragment(run_every=max(5.0, settings.refresh_s * 3))
    def finished_panel() -> None:
        now = now_ms()
        stale = settings.stale_after_s * 1000
        rows = []
        for session in store.sessions():
            view = get_view(store, session)
            state = agg.status(view, now, stale)
            if state == "live":
                continue
            rows.append(finished_row(store, session, view, state, now))
        rows.sort(key=lambda r: r["_t0"], reverse=True)
        st.subheader(f"Finished · {len(rows)}")
        if not rows:
            st.caption("No finished session yet.")
            return
        frame = pd.DataFrame(rows).drop(columns=["_t0"])
        st.dataframe(frame, hide_index=True, width="stretch")
        labels = {r["session"]: f"{r['session']} — {r['candidate / job']}" for r in rows}
        left, right = st.columns([4, 1], vertical_alignment="bottom")
        chosen = left.selectbox(
            "Replay a session",
            list(labels),
            format_func=lambda s: labels.get(s, s),
            key="replay-choice",
        )
        if right.button("Open", key="replay-open", width="stretch") and chosen:
            open_session(chosen)
            st.rerun()

    finished_panel()


@st.cache_resource(show_spinner=False)
def _row_cache() -> dict[tuple[int, str], tuple[int, str, dict]]:
    return {}


def finished_row(
    store: EventStore, session: str, view: agg.SessionView, state: str, now: float
) -> dict:
    """One row of the finished sessions' table (cached while the session is unchanged)."""
    cache = _row_cache()
    key = (id(store), session)
    version = store.version(session)
    hit = cache.get(key)
    if hit is not None and hit[0] == version and hit[1] == state:
        return hit[2]
    summaries = agg.answer_summaries(view)
    bands = " ".join(
        f"{view.questions[i].label}:{s.band}"
        for i, s in sorted(summaries.items())
        if s.band and i < len(view.questions)
    )
    t0, t1 = agg.session_span(view, now)
    row = {
        "session": session,
        "candidate / job": view.title(),
        "status": state + (f" ({view.end_reason})" if view.end_reason else ""),
        "started": datetime.fromtimestamp(view.t0_ms / 1000).strftime("%Y-%m-%d %H:%M")
        if view.t0_ms
        else "–",
        "minutes": round((t1 - t0) / 60000, 1) if view.t0_ms else None,
        "answered": sum(1 for q in view.questions if q.answered),
        "score": view.score.score if view.score else None,
        "bands per answer": bands,
        "events": store.event_count(session),
        "malformed": view.malformed,
        "_t0": view.t0_ms or 0.0,
    }
    cache[key] = (version, state, row)
    return row


def render_card(c: agg.Card) -> None:
    if c.speaking is None:
        speaking = '<span class="iv-pill iv-silent">no speech yet</span>'
    elif c.speaking:
        speaking = '<span class="iv-pill iv-speaking">● speaking</span>'
    else:
        speaking = '<span class="iv-pill iv-silent">silent</span>'
    errors = f' · <span style="color:#c62828">{c.errors} interviewer error(s)</span>'
    st.markdown(
        f'<div class="iv-card-title">{literal(c.title)}</div>'
        f'<div class="iv-sub">session <code>{literal(c.session)}</code> · started '
        f"{hhmmss(c.started_ms)}{errors if c.errors else ''}</div>"
        f'<div style="margin-top:6px"><span class="iv-pill iv-live">LIVE</span>{speaking}</div>'
        f'<div class="iv-q">{literal(c.question)}</div>'
        f"<div>{band_html(c.band, c.score)}</div>"
        f"{mix_html(c.mix)}"
        f'<div class="iv-health">{literal(health_line(c.health))}</div>',
        unsafe_allow_html=True,
    )
    if st.button("Open session →", key=f"open-{c.session}", width="stretch"):
        open_session(c.session)
        st.rerun()


# --------------------------------------------------------------------------- charts

_MMSS = (
    "floor(datum.value / 60) + ':' + (datum.value % 60 < 10 ? '0' : '') + floor(datum.value % 60)"
)


def _x(domain_s: float, title: str | None = "time (m:ss)") -> alt.X:
    return alt.X(
        "t:Q",
        title=title,
        scale=alt.Scale(domain=[0, domain_s], nice=False),
        axis=alt.Axis(labelExpr=_MMSS, tickMinStep=1),
    )


def _span_layers(view: agg.SessionView, t0: float, domain_s: float) -> list[alt.Chart]:
    spans = [
        {
            "t": (q.answer_start_ms - t0) / 1000,
            "t2": (max(q.answer_end_ms, q.answer_start_ms) - t0) / 1000,
            "answer": f"answer to {q.label}",
        }
        for q in view.questions
        if q.answer_start_ms is not None and q.answer_end_ms is not None
    ]
    asks = [
        {"t": (q.asked_ms - t0) / 1000, "label": q.label, "question": q.text}
        for q in view.questions
        if q.asked_ms is not None
    ]
    layers = []
    if spans:
        layers.append(
            alt.Chart(pd.DataFrame(spans))
            .mark_rect(color="#1a73e8", opacity=0.12)
            .encode(x=_x(domain_s), x2="t2:Q", tooltip=["answer:N"])
        )
    if asks:
        frame = pd.DataFrame(asks)
        layers.append(
            alt.Chart(frame)
            .mark_rule(strokeDash=[4, 3], color="#1a1a1a")
            .encode(x=_x(domain_s), tooltip=["label:N", "question:N"])
        )
        layers.append(
            alt.Chart(frame)
            .mark_text(align="left", baseline="top", dx=4, dy=2, fontWeight="bold")
            .encode(x=_x(domain_s), y=alt.value(0), text="label:N")
        )
    return layers


def timeline_chart(view: agg.SessionView, now: float) -> alt.VConcatChart:
    """Probability per class over time, valence below; answer spans and asks marked."""
    t0, t1 = agg.session_span(view, now)
    domain_s = (t1 - t0) / 1000
    bin_ms = agg.auto_bin_ms(t1 - t0, target_bins=300)
    bins = agg.bins(view.points, t0, t1, bin_ms)
    rows, val_rows = [], []
    for b in bins:
        t = (min(b.start_ms + bin_ms / 2, t1) - t0) / 1000
        if b.faces:
            for e in agg.EMOTIONS:
                rows.append({"t": t, "emotion": e, "p": round(b.mean_probs.get(e, 0.0), 4)})
            v = b.valence or 0.0
            val_rows.append({"t": t, "valence": round(v, 4), "pos": max(v, 0), "neg": min(v, 0)})
    colors = alt.Scale(domain=list(agg.EMOTIONS), range=list(report.EMOTION_COLORS.values()))
    probs = pd.DataFrame(rows, columns=["t", "emotion", "p"])
    lines = (
        alt.Chart(probs)
        .mark_line(interpolate="monotone", strokeWidth=2)
        .encode(
            x=_x(domain_s, None),
            y=alt.Y("p:Q", title="probability", scale=alt.Scale(domain=[0, 1])),
            color=alt.Color("emotion:N", scale=colors, legend=alt.Legend(orient="top")),
            tooltip=["emotion:N", alt.Tooltip("p:Q", format=".0%"), alt.Tooltip("t:Q")],
        )
    )
    spans = _span_layers(view, t0, domain_s)
    top = alt.layer(*spans, lines).properties(height=230, title="Emotion per class")
    valence = pd.DataFrame(val_rows, columns=["t", "valence", "pos", "neg"])
    pos = (
        alt.Chart(valence)
        .mark_area(color="#2ca02c", opacity=0.6, interpolate="monotone")
        .encode(
            x=_x(domain_s),
            y=alt.Y("pos:Q", title="valence", scale=alt.Scale(domain=[-1, 1])),
            tooltip=[alt.Tooltip("valence:Q", format="+.2f")],
        )
    )
    neg = (
        alt.Chart(valence)
        .mark_area(color="#d62728", opacity=0.6, interpolate="monotone")
        .encode(x=_x(domain_s), y="neg:Q")
    )
    zero = alt.Chart(pd.DataFrame({"y": [0]})).mark_rule(color="#888").encode(y="y:Q")
    bottom = alt.layer(*spans, pos, neg, zero).properties(
        height=90, title="Valence (positive − negative)"
    )
    return alt.vconcat(top, bottom, spacing=8).resolve_scale(color="independent")


def mix_chart(view: agg.SessionView, now: float) -> alt.Chart:
    """The share of each class over time (stacked to 100 %)."""
    t0, t1 = agg.session_span(view, now)
    domain_s = (t1 - t0) / 1000
    bin_ms = agg.auto_bin_ms(t1 - t0, target_bins=80, floor_ms=5000)
    rows = []
    for b in agg.bins(view.points, t0, t1, bin_ms):
        if not b.faces:
            continue
        t = (min(b.start_ms + bin_ms / 2, t1) - t0) / 1000
        for e in agg.EMOTIONS:
            rows.append({"t": t, "emotion": e, "share": b.counts.get(e, 0) / b.faces})
    colors = alt.Scale(domain=list(agg.EMOTIONS), range=list(report.EMOTION_COLORS.values()))
    return (
        alt.Chart(pd.DataFrame(rows, columns=["t", "emotion", "share"]))
        .mark_area(interpolate="monotone")
        .encode(
            x=_x(domain_s),
            y=alt.Y(
                "share:Q", stack="normalize", title="share of faces", axis=alt.Axis(format="%")
            ),
            color=alt.Color("emotion:N", scale=colors, legend=None),
            order=alt.Order("emotion:N"),
            tooltip=["emotion:N", alt.Tooltip("share:Q", format=".0%")],
        )
        .properties(height=200, title="Emotion mix over time")
    )


# --------------------------------------------------------------------------- session page


def session_page(store: EventStore, settings: DashboardSettings, session: str, user: str) -> None:
    if st.button("← All sessions", key="back"):
        open_session(None)
        st.rerun()
    if not contract.valid_session_id(session):
        st.error(f"Not a session id: {literal(repr(session))}")
        return
    now = now_ms()
    stale = settings.stale_after_s * 1000
    view = get_view(store, session)
    live = agg.status(view, now, stale) == "live"

    @st.fragment(run_every=settings.refresh_s if live else max(10.0, settings.refresh_s * 5))
    def body() -> None:
        status_banner(store)
        render_session(store, settings, session)

    body()

    if live and view.events:
        st.divider()
        follow_up_form(store, session, user)
    st.divider()
    downloads(store, session)


def render_session(store: EventStore, settings: DashboardSettings, session: str) -> None:
    now = now_ms()
    view = session_view(store, session)
    state = agg.status(view, now, settings.stale_after_s * 1000)
    if view.events == 0:
        st.title(f"Session {literal(session)}")
        st.info(
            "No events for this session yet. It appears here as soon as the room, the "
            "workers or the interviewer publish anything for it."
        )
        return
    pill = {"live": "iv-live", "ended": "iv-ended"}.get(state, "iv-stalled")
    speaking = ""
    if state == "live" and view.speaking is not None:
        speaking = (
            '<span class="iv-pill iv-speaking">● speaking</span>'
            if view.speaking
            else '<span class="iv-pill iv-silent">silent</span>'
        )
    ended = f" · ended {hhmmss(view.ended_ms)}" if view.ended_ms else ""
    st.markdown(
        f"<h1 style='margin-bottom:0'>{literal(view.title())}</h1>"
        f'<div class="iv-sub">session <code>{literal(session)}</code> · started '
        f"{literal(report.clock(view.started_ms or view.first_ms))}{ended}</div>",
        unsafe_allow_html=True,
    )
    st.markdown(
        f'<span class="iv-pill {pill}">{state.upper()}</span>{speaking}'
        + (f" <span class='iv-sub'>{literal(view.end_reason)}</span>" if view.end_reason else ""),
        unsafe_allow_html=True,
    )
    if state == "stalled":
        st.warning(
            "This session has no end event and no event for "
            f"{(now - (view.last_ms or now)) / 1000:.0f} s: its room or gateway probably "
            "stopped mid-way. Everything received so far is shown."
        )
    if view.malformed:
        st.warning(
            f"{view.malformed} malformed event(s) in this session were skipped "
            "(see Pipeline health)."
        )
    current = view.current
    if state == "live" and current is not None:
        st.markdown(f"**Now asking {literal(current.label)}:** {literal(current.text)}")
    working = agg.working_text(view, now) if state == "live" else None
    if working:
        st.info(literal(working))
    pending = view.pending_follow_ups
    if pending:
        st.info("Follow-up waiting to be asked: " + " · ".join(f"“{literal(p)}”" for p in pending))

    h = agg.health(view, now)
    recent = agg.recent_mix(view, now)
    score = view.score
    trend = [u.score for u in view.scores]
    if len(trend) > 80:
        trend = [*trend[:: max(1, len(trend) // 80)], trend[-1]]
    before = [u.score for u in view.scores if u.at_ms <= now - agg.MIX_WINDOW_MS]
    change = (score.score - before[-1]) if score and before else None
    whole = agg.emotion_mix(view.points)
    shown = recent if state == "live" else whole
    t0, t1 = agg.session_span(view, now)
    positive_trend = [
        round(sum(b.counts.get(e, 0) for e in agg.POSITIVE) / b.faces, 3)
        for b in agg.bins(view.points, t0, t1, agg.auto_bin_ms(t1 - t0, 40, 5000))
        if b.faces
    ]
    cols = st.columns(6)
    cols[0].metric(
        f"Score · {literal(score.band)}" if score else "Score",
        f"{score.score:.1f}" if score else "–",
        delta=f"{change:+.1f} in 30 s" if change is not None and state == "live" else None,
        chart_data=trend if len(trend) > 1 else None,
        chart_type="area",
        help="The session's emotion score: 50, +0.1 per positive face, −0.1 per negative "
        "one; above 70 good, above 40 normal, else bad.",
        border=True,
    )
    cols[1].metric(
        "Positive · 30 s" if state == "live" else "Positive",
        f"{shown.positive:.0%}" if shown.faces else "–",
        chart_data=positive_trend if len(positive_trend) > 1 else None,
        chart_type="area",
        help="Share of frames whose face looked happy or normal"
        + (" over the last 30 s." if state == "live" else "."),
        border=True,
    )
    cols[2].metric(
        "Answered",
        f"{sum(1 for q in view.questions if q.answered)} / {len(view.questions)}",
        border=True,
    )
    cols[3].metric(
        "Analysed fps",
        f"{h.fps:.1f}" if h.fps is not None else "–",
        help="Emotion results per second" + (" over the last 10 s." if state == "live" else "."),
        border=True,
    )
    cols[4].metric(
        "Latency p50",
        f"{h.latency_p50_ms:.0f} ms" if h.latency_p50_ms is not None else "–",
        help="Glass to result: from the capture of a frame to its emotion result "
        "(EmotionResult.capture_ms → done_ms)"
        + (", last 10 s." if state == "live" else ", whole session."),
        border=True,
    )
    cols[5].metric(
        "Dropped" + (" (est.)" if h.dropped_source == "estimated" else ""),
        f"{h.frames_dropped:,}" if h.frames_dropped is not None else "–",
        help="Frames dropped before analysis: counted by the gateway at the session's end; "
        "while live, estimated from gaps in the analysed frames' sequence numbers.",
        border=True,
    )

    st.subheader("Emotion timeline")
    st.altair_chart(timeline_chart(view, now), width="stretch", key="timeline")
    st.caption("Shaded: the candidate's answers · dashed: a question asked.")
    left, right = st.columns([3, 1])
    left.altair_chart(mix_chart(view, now), width="stretch", key="mix")
    left.markdown(legend_html(), unsafe_allow_html=True)
    with right:
        st.markdown("**Last 30 s**" if state == "live" else "**Whole session**")
        st.markdown(mix_rows_html(shown), unsafe_allow_html=True)

    st.subheader("Questions, answers and evaluations")
    summaries = agg.answer_summaries(view)
    if not view.questions:
        st.caption("No questions yet.")
    for q in view.questions:
        render_question(view, q, summaries.get(q.index))

    with st.expander("Full transcript", expanded=False):
        if not view.transcripts:
            st.caption("No speech transcribed yet.")
        for t in view.transcripts:
            label = (
                view.questions[t.question].label if 0 <= t.question < len(view.questions) else "—"
            )
            offset = report.mmss((t.start_ms - view.t0_ms) / 1000)
            st.markdown(
                f"<span class='iv-sub'>{offset} · {literal(label)}</span> "
                + report.words_html(view, t, literal),
                unsafe_allow_html=True,
            )
    if view.errors:
        with st.expander(f"Interviewer errors ({len(view.errors)})"):
            for e in view.errors:
                st.markdown(f"- **{literal(e.stage)}**: {literal(e.message)}")
    with st.expander("Pipeline health", expanded=False):
        st.markdown(health_line(h) or "no emotion results")
        table = {
            "emotion results": h.results,
            "frames without a face": f"{h.no_face_share:.0%}"
            if h.no_face_share is not None
            else "–",
            "latency p95 (ms)": f"{h.latency_p95_ms:.0f}" if h.latency_p95_ms is not None else "–",
            "timed by the browser clock": f"{h.browser_clock_share:.0%}"
            if h.browser_clock_share is not None
            else "–",
            "events": view.events,
            "malformed events skipped": view.malformed,
            **{f"gateway {k}": f"{v:g}" for k, v in sorted(h.stats.items())},
        }
        # st.table renders its cells as Markdown: the gateway's stat names come from the bus
        st.table(
            pd.DataFrame(
                {
                    "figure": [literal(k) for k in table],
                    "value": [literal(v) for v in table.values()],
                }
            )
        )
        for sample in view.malformed_samples:
            st.code(sample, language=None)


def render_question(
    view: agg.SessionView, q: agg.QuestionView, summary: agg.AnswerSummary | None
) -> None:
    with st.container(border=True):
        left, right = st.columns([3, 2])
        with left:
            tag = " · interviewer's follow-up" if q.follow_up else ""
            tag += f" · attempt {q.attempt}" if q.attempt > 1 else ""
            st.markdown(f"#### {literal(q.label)}{tag}")
            st.markdown(f"**{literal(q.text)}**")
            transcripts = agg.answer_transcripts(view, q)
            if q.no_answer:
                st.caption("No answer was heard in this attempt.")
            elif transcripts:
                st.markdown(
                    " ".join(report.words_html(view, t, literal) for t in transcripts),
                    unsafe_allow_html=True,
                )
            elif q.answer:
                st.markdown(literal(q.answer))
            else:
                st.caption("waiting for the answer…" if q.asked_ms is not None else "not asked yet")
        with right:
            if summary is not None:
                notes = "".join(f"<li>{literal(n)}</li>" for n in summary.notes)
                st.markdown(
                    f"<div>{band_html(summary.band, summary.score)}</div>"
                    f'<div class="iv-summary"><b>{literal(summary.headline)}</b>'
                    f"<ul>{notes}</ul></div>",
                    unsafe_allow_html=True,
                )
            if q.rows:
                st.markdown(f"**{literal(q.rows[0][0])}:** {literal(q.rows[0][1])}")
            items = report.metric_items(q.metrics)
            if items:
                st.markdown(" · ".join(f"**{literal(k)}** {literal(v)}" for k, v in items))
            if q.end_reason:
                reason = report.END_REASONS.get(q.end_reason, q.end_reason)
                st.caption(f"answer ended: {literal(reason)}")
        if q.earlier:
            with st.expander(f"Earlier attempts ({len(q.earlier)}; the latest one counts)"):
                for earlier in q.earlier:
                    overall = f" — {earlier.rows[0][1]}" if earlier.rows else ""
                    st.markdown(f"**Attempt {literal(earlier.attempt)}**{literal(overall)}")
                    words = agg.answer_transcripts(view, earlier)
                    if words:
                        st.markdown(
                            " ".join(report.words_html(view, t, literal) for t in words),
                            unsafe_allow_html=True,
                        )
                    else:
                        st.caption(literal(earlier.answer) or "no answer heard")
        if q.rows:
            with st.expander(
                f"Evaluation of {literal(q.label)}"
                + (f" ({literal(q.engine)} engine)" if q.engine else ""),
                expanded=False,
            ):
                # st.table renders its cells as Markdown
                rows = [[literal(cell) for cell in row] for row in q.rows]
                st.table(pd.DataFrame(rows, columns=["Criterion", "Rating", "Reason"]))
                evaluation = q.evaluation or contract.Evaluation()
                if evaluation.rule_based:
                    st.caption(
                        "Rated by the fixed rules, not the model: "
                        + ", ".join(literal(f) for f in evaluation.rule_based)
                        + (
                            " · lowered by a rule: " + ", ".join(evaluation.clamped)
                            if evaluation.clamped
                            else ""
                        )
                    )
                if evaluation.tips:
                    st.markdown(
                        "**Tips**\n"
                        + "\n".join(f"{i}. {literal(t)}" for i, t in enumerate(evaluation.tips, 1))
                    )
                if evaluation.model_answer:
                    st.markdown("**Model answer**")
                    for paragraph in literal_paragraphs(evaluation.model_answer):
                        st.markdown(paragraph)


def follow_up_form(store: EventStore, session: str, user: str) -> None:
    st.subheader("Ask a follow-up question")
    st.caption(
        "It is shown and spoken in the candidate's room as the next question (after the "
        "current answer is evaluated) and evaluated like the others."
    )
    with st.form("follow-up", clear_on_submit=True):
        text = st.text_area("Question", max_chars=500, key="follow-up-text", height=80)
        sent = st.form_submit_button("Send to the room", type="primary", key="follow-up-send")
    if sent:
        text = (text or "").strip()
        if not text:
            st.warning("Type a question first.")
            return
        command = contract.InterviewCommand(
            session=session, command="follow_up", text=text, by=user, at_ms=contract.now_ms()
        )
        try:
            store.publish(command, "command")
        except bus.BusUnavailableError as exc:
            st.error(f"Not sent: {literal(exc)}")
        else:
            st.success(f"Sent: “{literal(text)}”")


def downloads(store: EventStore, session: str) -> None:
    def make_html() -> str:
        try:
            view = get_full_view(store, session)
        except bus.BusUnavailableError:
            view = get_view(store, session)  # the summary kept in memory
        return report.render_html(view, contract.now_ms())

    left, right, _ = st.columns([1, 1, 2])
    left.download_button(
        "Download report (HTML)",
        data=make_html,
        file_name=f"intervue-{session}.html",
        mime="text/html",
        on_click="ignore",
        key="download-html",
        width="stretch",
    )
    if report.pdf_available():
        right.download_button(
            "Download report (PDF)",
            data=lambda: report.html_to_pdf(make_html()),
            file_name=f"intervue-{session}.pdf",
            mime="application/pdf",
            on_click="ignore",
            key="download-pdf",
            width="stretch",
        )
    else:
        right.caption("PDF needs Playwright and Chromium (not installed here).")


# --------------------------------------------------------------------------- main


def invite_form(settings: DashboardSettings) -> None:
    """Issue a signed, expiring room link with the gateway's key (the same key the
    gateway checks: INTERVUE_GATEWAY_TOKEN_SECRET_FILE, set for every role by `up`)."""
    from stream import tokens
    from stream.settings import GatewaySettings

    with st.expander("Invite a candidate"):
        with st.form("invite", clear_on_submit=False):
            room = st.text_input("Room", value="interview-1", max_chars=64)
            hours = st.number_input("Valid for (hours)", 0.25, 168.0, 2.0, step=0.25)
            made = st.form_submit_button("Make link")
        if not made:
            return
        try:
            key = GatewaySettings().secret()
            if key is None:
                st.info("The gateway runs in dev mode: rooms need no invitation.")
                return
            token = tokens.issue(key, room, float(hours) * 3600, time.time())
            link = tokens.invite_url(settings.gateway_url, room, token)
        except (ValueError, OSError) as exc:
            st.error(literal(exc))
            return
        st.code(link, language=None)


def main() -> None:
    st.set_page_config(page_title="intervue · dashboard", page_icon="🎙️", layout="wide")
    st.markdown(STYLE, unsafe_allow_html=True)
    try:
        settings = DashboardSettings()
        bus_settings = BusSettings()
    except Exception as exc:  # a bad value in the environment
        st.error("Invalid dashboard configuration:")
        st.code(str(exc), language=None)
        st.stop()
        return
    user = login_gate(settings)
    store = store_for(bus_settings.nats_url, settings)
    with st.sidebar:
        st.markdown("### intervue")
        st.caption(f"logged in as **{literal(user)}**")
        if st.button("Log out", key="logout"):
            if "user" in st.session_state:
                del st.session_state["user"]
                st.rerun()
            else:
                st.logout()
        st.caption(f"NATS: {literal(bus_settings.nats_url)}")
        invite_form(settings)
    session = st.query_params.get("session")
    if session:
        session_page(store, settings, session, user)
    else:
        overview(store, settings)


main()
