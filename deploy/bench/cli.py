"""The ``intervue bench`` command group (`deploy.cli` mounts it): thin Typer wiring over
the benchmarks of this package, each imported only when its command runs (the load
benchmark's command is its own module's `bench_load`, so ``python -m deploy.bench.load``
runs it too)."""

from __future__ import annotations

from pathlib import Path

import typer

from deploy.bench.load import bench_load
from deploy.log_setup import setup_logging

bench_app = typer.Typer(help="Benchmarks that print tables (never tests).", no_args_is_help=True)


def _csv(text: str, cast=str) -> list:  # type: ignore[no-untyped-def]
    return [cast(v.strip()) for v in text.split(",") if v.strip()]


@bench_app.command("speech")
def bench_speech(
    output: Path = typer.Option(None, help="Also write the Markdown table here"),
) -> None:
    """End-of-utterance → transcript latency and real-time factor per Whisper model."""
    from deploy.bench.speech import run_speech_bench

    setup_logging()
    report = run_speech_bench()
    typer.echo(report)
    if output:
        output.write_text(report, encoding="utf-8")


@bench_app.command("vision")
def bench_vision(
    frames: int = typer.Option(200, help="Frames per measured configuration"),
    baseline: bool = typer.Option(True, help="Also run the YOLOv8 seed-style baseline"),
    backend: str = typer.Option(
        None, "--backend", help="Comma list (auto,onnxruntime,torch,…): run the engines bench"
    ),
    sessions: str = typer.Option(None, "--sessions", help="Comma list of session counts"),
    batch_sizes: str = typer.Option("1,8,32,64", "--batch-sizes", help="Raw backend batches"),
    classifier: str = typer.Option("fer-mini-xception", help="Emotion bundle name or path"),
    window_ms: float = typer.Option(2.0, "--window-ms", help="Batch window (ms)"),
    max_batch: int = typer.Option(32, "--max-batch", help="Worker max batch"),
    concurrency: int = typer.Option(1, help="Preparing threads"),
    faces: int = typer.Option(1, "--faces", help="Faces per frame: 1 or 4"),
    output: Path = typer.Option(None, help="Also write the Markdown table here"),
) -> None:
    """Per-frame vision cost next to a YOLOv8 baseline; with --backend/--sessions, the
    engines: backend × batch size and batching on/off × sessions."""
    from deploy.bench.vision import run_engines_bench, run_vision_bench

    setup_logging()
    if backend or sessions:
        report = run_engines_bench(
            backends=_csv(backend or "auto"),
            sessions=_csv(sessions or "1,4,8", int),
            batch_sizes=_csv(batch_sizes, int),
            frames=frames,
            classifier=classifier,
            window_ms=window_ms,
            max_batch=max_batch,
            concurrency=concurrency,
            faces_per_frame=faces,
        )
    else:
        report = run_vision_bench(frames=frames, baseline=baseline)
    typer.echo(report)
    if output:
        output.write_text(report, encoding="utf-8")


bench_app.command("load")(bench_load)


@bench_app.command("room")
def bench_room(
    candidates: int = typer.Option(1, "--candidates", help="Real Chromium candidates at once"),
    rounds: int = typer.Option(1, "--rounds", help="Interviews per candidate, one after another"),
    fps: float = typer.Option(15.0, "--fps", help="The fake camera's frame rate"),
    language: str = typer.Option("en", "--language", help="en or ko"),
    answers: int = typer.Option(3, "--answers", help="Answers per candidate (1–3)"),
    ends: str = typer.Option(
        "done,silence", "--ends", help="How answers end, in turn: done (pressed), silence"
    ),
    buffers: str = typer.Option(
        "marker,stock",
        "--variants",
        "--buffers",
        help="Stacks to compare, each on a fresh `intervue up`: marker (the gateway's "
        "jitter buffer), stock (aiortc's: the video baseline), nopause (marker without "
        "transcripts made at pauses: the speech baseline)",
    ),
    done_after: float = typer.Option(
        0.4, "--done-after", help="Seconds from an answer's last word to pressing Done"
    ),
    whisper: str = typer.Option("base", "--whisper", help="Whisper model of the stack"),
    llm: str = typer.Option("offline", "--llm", help="INTERVUE_LLM_ENGINE of the stack"),
    url: str = typer.Option(
        None, "--url", help="A room link of a running stack instead (no baseline)"
    ),
    step_timeout: float = typer.Option(120.0, "--step-timeout", help="Seconds per wait"),
    output: Path = typer.Option(None, help="Also write the Markdown table here"),
    json_path: Path = typer.Option(None, "--json", help="Also write every figure as JSON here"),
) -> None:
    """What a candidate feels, in real headless Chromium against `intervue up`:
    glass-to-emotion, end of answer → transcript and evaluation on the page, question
    shown → spoken; p50/p95 per jitter buffer, the stock one as the baseline."""
    from deploy.bench.room import RoomBenchError, run_room_bench, write_json

    setup_logging()
    try:
        report, data = run_room_bench(
            candidates=candidates,
            rounds=rounds,
            fps=fps,
            language=language,
            answers=answers,
            ends=_csv(ends),
            buffers=_csv(buffers),
            whisper=whisper,
            llm=llm,
            url=url,
            step_timeout_s=step_timeout,
            done_after_s=done_after,
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    except (RoomBenchError, FileNotFoundError) as exc:
        typer.echo(f"bench room: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(report)
    if output:
        output.write_text(report, encoding="utf-8")
    if json_path:
        write_json(json_path, data)


@bench_app.command("llm")
def bench_llm(
    profiles: int = typer.Option(
        None, "--profiles", help="Profiles per language (default: all of them)"
    ),
    answers: int = typer.Option(1, "--answers", help="Answers evaluated per profile"),
    tasks: str = typer.Option(
        "questions-ko,questions-en,evaluation-ko,evaluation-en", "--tasks", help="Comma list"
    ),
    model: Path = typer.Option(None, "--model", help="GGUF to serve (default: the prepared one)"),
    base_url: str = typer.Option(
        None, "--base-url", help="Use this OpenAI-compatible server instead of starting one"
    ),
    model_name: str = typer.Option(None, "--model-name", help="Model name for --base-url"),
    threads: int = typer.Option(None, "--threads", help="llama.cpp threads (default: cores)"),
    context: int = typer.Option(4096, "--context", help="llama.cpp context, tokens"),
    interference: bool = typer.Option(
        True, help="Also measure vision and Whisper idle vs while the model generates"
    ),
    frames: int = typer.Option(100, "--frames", help="Vision frames per interference phase"),
    rounds: int = typer.Option(2, "--rounds", help="Idle/busy interference rounds"),
    output: Path = typer.Option(None, help="Also write the Markdown table here"),
    json_path: Path = typer.Option(None, "--json", help="Also write every figure as JSON here"),
) -> None:
    """The local language model through the product's client: per task (questions and
    evaluations, Korean and English) latency, tokens/s, JSON validity, language and
    grounding; and the vision worker and Whisper idle vs while it generates."""
    import json
    import signal

    from deploy.bench.llm import run_llm_bench

    setup_logging()

    def _interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt  # the bench reports the steps it finished, stops its server

    signal.signal(signal.SIGTERM, _interrupt)
    try:
        report, data = run_llm_bench(
            tasks=_csv(tasks),
            profiles=profiles,
            answers=answers,
            model=model,
            base_url=base_url,
            model_name=model_name,
            threads=threads,
            context=context,
            interference=interference,
            frames=frames,
            rounds=rounds,
        )
    except (ValueError, FileNotFoundError) as exc:
        raise typer.BadParameter(str(exc)) from None
    typer.echo(report)
    if output:
        output.write_text(report, encoding="utf-8")
    if json_path:
        json_path.write_text(json.dumps(data, ensure_ascii=False, indent=1), encoding="utf-8")
