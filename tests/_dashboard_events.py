"""Recorded-looking interview sessions built from contract messages, for the dashboard tests.

`interview_session` returns the messages one session would leave in JetStream, in the
order the roles would publish them: lifecycle, profile, questions, per question the ask,
speech activity, a transcript with timed words, the answer and its evaluation, emotion
results with score updates throughout (anxiety rises in the first 10 s of Q3), a report
and the end. `publish` replays messages into a real nats-server.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import msgspec

from inference.speech.metrics import speaking_metrics
from stream import contract
from stream.score import EmotionScore

ANSWERS = (
    "I built a data pipeline in Python that cleaned sensor logs and trained a model "
    "to predict failures so the team could plan maintenance",
    "When our training jobs kept crashing I profiled memory and found a leak in the data "
    "loader then I fixed it and added a regression test",
    "um I think the hardest part was uh explaining the tradeoffs to the product team "
    "because they wanted accuracy and speed at the same time",
)
QUESTIONS = (
    "Tell me about a machine learning project you are proud of.",
    "Describe a time you debugged a difficult production problem.",
    "How do you explain technical trade-offs to non-engineers?",
)
ROWS = [
    ["Overall", "Fine", "A clear answer with a concrete project."],
    ["Similarity to reference", "Fine (40%)", "Covers part of the reference."],
    ["Clarity / STAR", "Very good", "Situation, action and result are all there."],
    ["Technical explanation", "Fine", "Names the tools but not why."],
    ["Fitting examples", "Very good", "The example fits the question."],
    ["Communication style", "Fine", "Direct, a little fast."],
    ["Natural delivery / filler words", "Needs improvement", "Several filler words."],
]

QUESTION_GAP_MS = 40_000.0
ANSWER_DELAY_MS = 3_000.0
ANSWER_MS = 25_000.0


def _face(label: str, strength: float = 0.7) -> contract.Face:
    rest = (1.0 - strength) / (len(contract.EMOTIONS) - 1)
    probs = {e: (strength if e == label else rest) for e in contract.EMOTIONS}
    return contract.Face(
        box=(200.0, 120.0, 420.0, 380.0),
        detector_score=0.95,
        probs=probs,
        label=label,
        confidence=strength,
        valence="positive" if label in contract.POSITIVE_EMOTIONS else "negative",
    )


def label_at(t_rel_ms: float) -> str | None:
    """The candidate's face over the session: calm, then anxious early in Q3, a gap with
    no face in Q2."""
    q3_answer = 2_000 + 2 * QUESTION_GAP_MS + ANSWER_DELAY_MS
    q2_answer = 2_000 + QUESTION_GAP_MS + ANSWER_DELAY_MS
    if q3_answer <= t_rel_ms < q3_answer + 9_000:
        return "anxiety"
    if q2_answer + 12_000 <= t_rel_ms < q2_answer + 14_000:
        return None
    return "happy" if int(t_rel_ms // 4_000) % 4 == 0 else "normal"


def interview_session(
    session: str,
    t0_ms: float,
    *,
    questions: int = 3,
    ended: bool = True,
    fps: float = 4.0,
    evaluate_last: bool = True,
    until_ms: float | None = None,
) -> list[contract.BusMessage]:
    """One session's messages in publish order (timestamps from `t0_ms`)."""
    timed: list[tuple[float, int, contract.BusMessage]] = []
    order = 0

    def add(at: float, message: contract.BusMessage) -> None:
        nonlocal order
        order += 1
        timed.append((at, order, message))

    add(t0_ms, contract.SessionEvent(session=session, event="started", at_ms=t0_ms, meta={}))
    add(
        t0_ms + 100,
        contract.Profile(
            session=session,
            job_title="ML Engineer",
            years=3,
            company="Acme",
            self_intro="I am a machine learning engineer who likes data pipelines.",
            language="en",
            at_ms=t0_ms + 100,
        ),
    )
    add(
        t0_ms + 1_000,
        contract.InterviewEvent(
            session=session,
            step="questions",
            at_ms=t0_ms + 1_000,
            data={"questions": list(QUESTIONS), "engine": "offline", "language": "en"},
        ),
    )
    last_ms = t0_ms + 2_000 + questions * QUESTION_GAP_MS
    for index in range(questions):
        asked = t0_ms + 2_000 + index * QUESTION_GAP_MS
        add(
            asked,
            contract.InterviewEvent(
                session=session,
                step="asked",
                at_ms=asked,
                data={"index": index, "question": QUESTIONS[index], "total": 3, "follow_up": False},
            ),
        )
        start, end = asked + ANSWER_DELAY_MS, asked + ANSWER_DELAY_MS + ANSWER_MS
        add(start, contract.SpeechActivity(session=session, speaking=True, at_ms=start))
        add(end, contract.SpeechActivity(session=session, speaking=False, at_ms=end))
        text = ANSWERS[index]
        words = text.split()
        step_s = ANSWER_MS / 1000 / len(words)
        spoken = [
            contract.Word(w, i * step_s, (i + 0.8) * step_s, 0.9) for i, w in enumerate(words)
        ]
        metrics = speaking_metrics(spoken, text, "en", ANSWER_MS / 1000)
        add(
            end + 1_500,
            contract.Transcript(
                session=session,
                utterance_id=f"{session}-u{index}",
                text=text,
                language="en",
                words=spoken,
                start_ms=start,
                end_ms=end,
                cut_ms=end,
                done_ms=end + 1_500,
                metrics=metrics,
                model="tiny.en",
            ),
        )
        add(
            end + 1_600,
            contract.InterviewEvent(
                session=session,
                step="answered",
                at_ms=end + 1_600,
                data={
                    "index": index,
                    "answer": text,
                    "metrics": msgspec.to_builtins(
                        contract.merge_speaking_metrics([(start, end, metrics)])
                    ),
                    "start_ms": start,
                    "end_ms": end,
                },
            ),
        )
        if index < questions - 1 or evaluate_last:
            add(
                end + 3_000,
                contract.InterviewEvent(
                    session=session,
                    step="evaluated",
                    at_ms=end + 3_000,
                    data={
                        "index": index,
                        "question": QUESTIONS[index],
                        "evaluation": {
                            "tips": ["Lead with the result.", "Name one metric.", "Slow down."],
                            "model_answer": "In my last role I built …",
                        },
                        "rows": ROWS,
                        "engine": "offline",
                        "emotion": None,
                    },
                ),
            )
    if questions == 3 and evaluate_last:
        add(
            last_ms,
            contract.InterviewEvent(
                session=session, step="report", at_ms=last_ms, data={"items": [], "engine": "x"}
            ),
        )
    # Emotion results and score updates over the whole session.
    score = EmotionScore()
    period = 1000.0 / fps
    seq = 0
    t = 500.0
    while t0_ms + t < last_ms:
        seq += 1
        if seq % 25 == 0:  # a frame dropped now and then (a gap in seq)
            seq += 1
        label = label_at(t)
        capture = t0_ms + t
        faces = [_face(label)] if label else []
        result = contract.EmotionResult(
            session=session,
            seq=seq,
            capture_ms=capture,
            capture_source="rtcp",
            frame_sent_ms=capture + 20,
            done_ms=capture + 60 + (seq % 5) * 10,
            width=640,
            height=480,
            faces=faces,
            timings={"total": 4.0},
            worker="vision-1",
            model="fer-mini-xception",
        )
        add(result.done_ms, result)
        if score.add_result(capture, [f.label for f in faces]):  # one reading a second
            add(
                result.done_ms + 1,
                contract.ScoreUpdate(
                    session=session,
                    seq=seq,
                    score=score.score,
                    band=score.band,
                    faces_seen=score.faces_seen,
                    positive=score.positive,
                    negative=score.negative,
                    at_ms=result.done_ms + 1,
                ),
            )
        t += period
    if ended:
        add(
            last_ms + 500,
            contract.SessionEvent(
                session=session,
                event="ended",
                at_ms=last_ms + 500,
                reason="client ended the session",
                stats={"frames_sampled": seq, "frames_dropped": 7.0, "results": seq - 5},
            ),
        )
    timed.sort(key=lambda x: (x[0], x[1]))
    return [m for at, _, m in timed if until_ms is None or at <= until_ms]


def kind_of(message: contract.BusMessage) -> str:
    return type(message).__struct_config__.tag


async def publish(js, messages: Sequence[contract.BusMessage], batch: int = 64) -> None:
    """Replay messages into JetStream in order (acknowledged batches)."""
    for i in range(0, len(messages), batch):
        chunk = messages[i : i + batch]
        futures = [
            js.publish(contract.event_subject(m.session, kind_of(m)), contract.encode(m))
            for m in chunk
        ]
        await asyncio.gather(*futures)
