"""The speech worker: utterances from the JetStream work queue in, transcripts out.

Delivery guarantees (DESIGN.md: a worker that dies mid-answer loses nothing):

* Utterances wait in the work-queue stream ``INTERVUE_UTTERANCES`` (subjects
  ``intervue.utterances.*``, file storage, work-queue retention: a message is deleted once
  acknowledged; configured in `stream.bus.ensure_utterances_stream`). Every speech worker
  pulls from one durable consumer, ``speech-workers``, so workers share all sessions and
  each utterance goes to one worker at a time.
* A message is acknowledged only after its `Transcript` is stored in the events stream, or
  when it can never succeed (undecodable, oversized: terminated). Every utterance part gets
  a transcript: one judged silence or a hallucination gets an empty one (``text`` "",
  ``dropped_reason`` set, no metrics), so whoever assembles an answer from its parts knows
  when all of them are in; nobody shows an empty one. The `Transcript` carries a
  ``Nats-Msg-Id`` made of session, utterance and part, so a redelivery after a crash between
  publish and ack is stored once (the events stream's duplicate window).
* While Whisper runs, the worker sends ``in_progress`` every ``heartbeat_s`` so a long
  transcription is not redelivered; a worker that dies stops the heartbeats and the
  utterance goes to another worker ``ack_wait_s`` after the last one.
* A speculative part (sent at a pause inside an answer, `contract.Utterance.speculative`)
  is acknowledged at once and transcribed ahead; its result is kept
  (`inference.speech.speculation`), never published. The real part that follows with the
  same ``speculation`` number takes that result instead of running Whisper again. A
  speculative part is skipped when it waited too long (the worker is behind: real parts
  come first) or when as many are already running as the worker has threads. Losing one
  loses nothing: the real part is transcribed as usual.
* After ``max_deliver`` deliveries the server stops redelivering; the worker logs the
  give-up (from the last attempt it saw fail, and from the server's max-deliveries
  advisory, which also covers workers that died on the message).

The consumer's ``ack_wait`` and ``max_deliver`` are set (create or update) by each worker
at start; workers of one deployment should share those settings.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from inference.speech.metrics import speaking_metrics
from inference.speech.speculation import Speculations
from stream import bus, contract
from stream.settings import BusSettings

log = logging.getLogger(__name__)

#: Largest utterance payload accepted: 60 s of 16 kHz s16 plus the envelope.
DEFAULT_MAX_UTTERANCE_BYTES = 60 * 16_000 * 2 + 64 * 1024


class SpeechSettings(BaseSettings):
    """The speech worker (env prefix ``INTERVUE_SPEECH_``)."""

    model_config = SettingsConfigDict(env_prefix="INTERVUE_SPEECH_", extra="forbid")

    #: Where the offline Whisper models are prepared (default: INTERVUE_MODELS_DIR or
    #: ~/.cache/intervue/models).
    models_dir: Path | None = None
    #: "base" (multilingual; Korean, the product's default language, needs it), "tiny.en"
    #: (English only, fastest), a CTranslate2 model directory, or any faster-whisper name
    #: (downloaded by faster-whisper when online).
    model: str = "base"
    #: Language code ("ko", "en", ...) or "" to detect per utterance; an utterance's own
    #: `language` field wins over this.
    language: str = ""
    #: Re-decode a poor-looking utterance at temperatures 0.2 and 0.4 (slower: off by
    #: default for the room's latency; see Transcriber).
    temperature_fallback: bool = False
    compute_type: str = "int8"
    device: str = "cpu"
    beam_size: int = Field(1, ge=1, le=10)
    #: CTranslate2 threads per transcription (0 = its default).
    cpu_threads: int = Field(0, ge=0, le=256)
    #: Utterances transcribed at once by this worker.
    concurrency: int = Field(1, ge=1, le=16)
    #: Unacknowledged utterances go to another worker after this long without a heartbeat.
    ack_wait_s: float = Field(30.0, ge=1.0, le=3600.0)
    #: in_progress() heartbeat period while transcribing (0 = ack_wait_s / 3).
    heartbeat_s: float = Field(0.0, ge=0.0)
    #: A speculative part (sent at a pause, ahead of a possible end of answer) that
    #: waited longer than this in the queue is skipped: the worker is behind, and real
    #: parts matter more than guesses. (Measured from the gateway's cut time: gateway and
    #: worker clocks must agree, as for the latency metric.)
    speculation_max_wait_ms: float = Field(500.0, ge=0.0)
    #: Deliveries of one utterance before the server gives up on it.
    max_deliver: int = Field(5, ge=1, le=100)
    #: A failed attempt is retried after this delay (seconds).
    retry_delay_s: float = Field(2.0, ge=0.0)
    max_utterance_bytes: int = Field(DEFAULT_MAX_UTTERANCE_BYTES, ge=1024)
    #: Pull request timeout (how long one fetch waits for work). A graceful stop waits
    #: for the open one to run out, so this also bounds how long stopping takes.
    fetch_timeout_s: float = Field(2.0, gt=0.0)
    #: A gap between words at least this long is a pause (seconds; the gaps between an
    #: answer's utterances are judged by `contract.PAUSE_S`).
    pause_threshold_s: float = Field(contract.PAUSE_S, gt=0.0)
    #: Serve Prometheus metrics on this port (0 = off).
    metrics_port: int = Field(0, ge=0, le=65535)
    name: str = Field(default_factory=lambda: f"speech-{socket.gethostname()}-{os.getpid()}")

    @model_validator(mode="after")
    def _heartbeat(self) -> SpeechSettings:
        if self.heartbeat_s == 0.0:
            self.heartbeat_s = self.ack_wait_s / 3.0
        if self.heartbeat_s >= self.ack_wait_s:
            raise ValueError("heartbeat_s must be shorter than ack_wait_s")
        return self


def consumer_config(settings: SpeechSettings) -> ConsumerConfig:
    return ConsumerConfig(
        name=contract.SPEECH_CONSUMER,
        durable_name=contract.SPEECH_CONSUMER,
        description="speech workers: one transcription per utterance",
        deliver_policy=DeliverPolicy.ALL,
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=settings.ack_wait_s,
        max_deliver=settings.max_deliver,
        filter_subject=contract.utterances_wildcard(),
        max_ack_pending=1024,
    )


async def ensure_speech_consumer(js: JetStreamContext, settings: SpeechSettings) -> None:
    """Create the shared durable pull consumer, or update its ack_wait / max_deliver."""
    await js.add_consumer(contract.UTTERANCES_STREAM, consumer_config(settings))


class SpeechMetrics:
    """Prometheus metrics of one worker, in their own registry (no module globals)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.utterances = Counter(
            "intervue_speech_utterances", "Utterances handled", ["outcome"], registry=self.registry
        )
        self.transcribe_s = Histogram(
            "intervue_speech_transcribe_seconds",
            "Whisper time per utterance (s)",
            buckets=(0.1, 0.25, 0.5, 1, 2, 3, 5, 8, 13, 20, 30, 60),
            registry=self.registry,
        )
        self.rtf = Histogram(
            "intervue_speech_real_time_factor",
            "Whisper time over audio length",
            buckets=(0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 4),
            registry=self.registry,
        )
        self.latency_s = Histogram(
            "intervue_speech_latency_seconds",
            "Utterance cut (gateway) to transcript stored (s)",
            buckets=(0.25, 0.5, 1, 2, 3, 5, 8, 13, 20, 30, 60),
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "intervue_speech_in_flight", "Utterances being transcribed", registry=self.registry
        )


class SpeechWorker:
    """Pulls utterances from the shared consumer, transcribes them, publishes transcripts.

    `transcriber` is anything with ``transcribe(pcm, language) -> TranscriptionResult`` and
    a ``model_name`` (normally `inference.speech.transcriber.Transcriber`)."""

    def __init__(
        self,
        nc: NATS,
        transcriber: object,
        bus_settings: BusSettings,
        settings: SpeechSettings,
        metrics: SpeechMetrics | None = None,
    ) -> None:
        self.nc = nc
        self.js: JetStreamContext = nc.jetstream()
        self.transcriber = transcriber
        self.bus_settings = bus_settings
        self.settings = settings
        self.metrics = metrics or SpeechMetrics()
        self._pool = ThreadPoolExecutor(settings.concurrency, thread_name_prefix="speech")
        self._tasks: list[asyncio.Task] = []
        #: pull tasks waiting in a fetch (stop lets those run out rather than cancel them)
        self._fetching: set[asyncio.Task] = set()
        self._stopping = False
        self._sub: JetStreamContext.PullSubscription | None = None
        self._advisory = None
        #: Set by `abandon()`: in-flight messages are left unacknowledged (a crash).
        self._abandon = False
        self.in_flight: dict[str, Msg] = {}
        self.counts = {
            "received": 0,
            "transcribed": 0,
            "dropped": 0,
            "rejected": 0,
            "failed": 0,
            "gave_up": 0,
            "redelivered": 0,
            # fetched while stopping and handed back at once for another worker
            "handed_back": 0,
            # speculative parts transcribed ahead, skipped, and taken by a real part
            "speculated": 0,
            "speculation_skipped": 0,
            "speculation_reused": 0,
        }
        self.speculations = Speculations()
        self.last_deliveries: dict[str, int] = {}

    @property
    def model_name(self) -> str:
        return str(getattr(self.transcriber, "model_name", ""))

    async def start(self) -> None:
        self._stopping = False
        await bus.ensure_events_stream(self.js, self.bus_settings)
        await bus.ensure_utterances_stream(self.js, self.bus_settings)
        await ensure_speech_consumer(self.js, self.settings)
        self._sub = await self.js.pull_subscribe_bind(
            durable=contract.SPEECH_CONSUMER, stream=contract.UTTERANCES_STREAM
        )
        self._advisory = await self.nc.subscribe(
            "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES."
            f"{contract.UTTERANCES_STREAM}.{contract.SPEECH_CONSUMER}",
            cb=self._on_max_deliveries,
        )
        self._abandon = False
        self._tasks = [
            asyncio.create_task(self._pull_loop(), name=f"speech-pull-{i}")
            for i in range(self.settings.concurrency)
        ]
        log.info(
            "speech worker %s pulling %s from %s as %s (model %s, ack_wait %.0f s)",
            self.settings.name,
            contract.utterances_wildcard(),
            contract.UTTERANCES_STREAM,
            contract.SPEECH_CONSUMER,
            self.model_name,
            self.settings.ack_wait_s,
        )

    async def stop(self) -> None:
        """Stop pulling. Utterances being transcribed are handed back at once (nak) so
        another worker takes them without waiting for ack_wait."""
        self._stopping = True
        # A fetch cancelled here would leave its pull request open at the server, which
        # then hands the next utterance to an inbox nobody reads: it would wait out
        # ack_wait before any other worker saw it. So a fetch runs out (at most
        # fetch_timeout_s) and the loop hands back what it brought; only work is cancelled.
        fetching = [t for t in self._tasks if t in self._fetching and not self._abandon]
        for task in self._tasks:
            if task not in fetching:
                task.cancel()
        if fetching:
            await asyncio.wait(fetching, timeout=self.settings.fetch_timeout_s + 1.0)
            for task in fetching:
                task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        self._fetching.clear()
        for sub in (self._sub, self._advisory):
            if sub is not None:
                try:
                    await sub.unsubscribe()
                except Exception as exc:  # connection already gone
                    log.debug("unsubscribe failed: %s", exc)
        self._sub = self._advisory = None
        self.speculations.clear()
        self._pool.shutdown(wait=False, cancel_futures=True)
        # One line of what this worker did (bench room reads the snapshots' fate from it).
        log.info(
            "speech worker %s stopped: %s",
            self.settings.name,
            ", ".join(f"{name} {count}" for name, count in self.counts.items()),
        )

    async def abandon(self) -> None:
        """Stop as if the process died: in-flight utterances are neither acked nor naked
        (they are redelivered after ack_wait). For fault drills and tests."""
        self._abandon = True
        await self.stop()

    async def _on_max_deliveries(self, msg: Msg) -> None:
        try:
            data = json.loads(msg.data)
        except ValueError:
            data = {}
        self.counts["gave_up"] += 1
        self.metrics.utterances.labels(outcome="gave_up").inc()
        log.error(
            "giving up on utterance at %s stream seq %s after %s deliveries (max_deliver)",
            contract.UTTERANCES_STREAM, data.get("stream_seq"), data.get("deliveries"),
        )  # fmt: skip

    async def _pull_loop(self) -> None:
        assert self._sub is not None
        # nats-py's fetch can swallow a cancellation (it surfaces as a timeout): the flag
        # ends the loop anyway, so stop() cannot hang on it
        task = asyncio.current_task()
        while not self._stopping:
            self._fetching.add(task)
            try:
                msgs = await self._sub.fetch(1, timeout=self.settings.fetch_timeout_s)
            except (TimeoutError, NatsTimeoutError):
                continue
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # NATS reconnecting: back off, keep serving
                log.warning("fetch from %s failed: %s", contract.SPEECH_CONSUMER, exc)
                await asyncio.sleep(1.0)
                continue
            finally:
                self._fetching.discard(task)
            for msg in msgs:
                if self._stopping:  # came in while stopping: another worker takes it now
                    self.counts["handed_back"] += 1
                    await self._settle(msg, "nak")
                else:
                    await self._handle(msg)

    async def _heartbeat(self, msg: Msg) -> None:
        while True:
            await asyncio.sleep(self.settings.heartbeat_s)
            try:
                await msg.in_progress()
            except Exception as exc:
                log.warning("in_progress heartbeat failed: %s", exc)

    async def _settle(self, msg: Msg, action: str, delay: float | None = None) -> None:
        try:
            if action == "ack":
                await msg.ack_sync(timeout=5.0)
            elif action == "term":
                await msg.term()
            else:
                await msg.nak(delay=delay)
        except Exception as exc:  # the server redelivers after ack_wait; publish is deduped
            log.warning("could not %s %s: %s", action, msg.subject, exc)

    def _reject(self, reason: str, msg: Msg, detail: str = "") -> None:
        self.counts["rejected"] += 1
        self.metrics.utterances.labels(outcome=f"rejected_{reason}").inc()
        log.warning("rejected an utterance on %s: %s %s", msg.subject, reason, detail)

    async def _handle(self, msg: Msg) -> None:
        self.counts["received"] += 1
        deliveries = msg.metadata.num_delivered
        if deliveries > 1:
            self.counts["redelivered"] += 1
        if len(msg.data) > self.settings.max_utterance_bytes:
            self._reject("oversized", msg, f"({len(msg.data)} bytes)")
            await self._settle(msg, "term")
            return
        try:
            utt = contract.decode(msg.data, contract.Utterance)
        except contract.ContractError as exc:
            self._reject("undecodable", msg, str(exc))
            await self._settle(msg, "term")
            return
        if utt.session != contract.session_from_subject(msg.subject):
            self._reject("session_mismatch", msg)
            await self._settle(msg, "term")
            return
        if utt.sample_rate != 16_000:
            self._reject("sample_rate", msg, f"({utt.sample_rate} Hz)")
            await self._settle(msg, "term")
            return
        key = f"{utt.session}/{utt.utterance_id}/{utt.part}"
        if utt.speculative:
            await self._speculate(msg, utt, key)
            return
        self.last_deliveries[key] = deliveries
        self.in_flight[key] = msg
        self.metrics.in_flight.inc()
        heartbeat = asyncio.create_task(self._heartbeat(msg))
        try:
            await self._transcribe_and_publish(msg, utt, key, deliveries)
        except asyncio.CancelledError:
            if not self._abandon:  # graceful stop: hand it back now
                await asyncio.shield(self._settle(msg, "nak"))
            raise
        finally:
            heartbeat.cancel()
            self.in_flight.pop(key, None)
            self.metrics.in_flight.dec()

    def _start_transcription(self, utt: contract.Utterance) -> asyncio.Future:
        language = utt.language or self.settings.language or None
        return asyncio.get_running_loop().run_in_executor(
            self._pool, self.transcriber.transcribe, utt.pcm, language
        )

    async def _speculate(self, msg: Msg, utt: contract.Utterance, key: str) -> None:
        """Transcribe a speculative part ahead, in the background; acknowledged at once
        (it is a guess: nothing is lost with it)."""
        waited_ms = contract.now_ms() - utt.cut_ms
        if (
            waited_ms > self.settings.speculation_max_wait_ms
            or self.speculations.running() >= self.settings.concurrency
        ):
            self.counts["speculation_skipped"] += 1
            self.metrics.utterances.labels(outcome="speculation_skipped").inc()
        else:
            result = self._start_transcription(utt)
            self.speculations.add(key, utt.speculation, result)
            result.add_done_callback(self._observe_speculation)
            self.counts["speculated"] += 1
            self.metrics.utterances.labels(outcome="speculated").inc()
        await self._settle(msg, "ack")

    def _observe_speculation(self, future: asyncio.Future) -> None:
        if not future.cancelled() and future.exception() is None:
            self.metrics.transcribe_s.observe(future.result().compute_s)

    async def _speculated_result(self, utt: contract.Utterance, key: str) -> object | None:
        """The transcription made ahead for this part's speech, if one was made and
        succeeded (waiting for it if it still runs); None otherwise."""
        future = self.speculations.take(key, utt.speculation)
        if future is None:
            return None
        # asyncio.wait, not await: a cancelled speculation must not look like this
        # task being cancelled
        await asyncio.wait([future])
        if future.cancelled() or future.exception() is not None:
            return None
        self.counts["speculation_reused"] += 1
        self.metrics.utterances.labels(outcome="speculation_reused").inc()
        log.debug("%s: the transcript made at its pause stands for it", key)
        return future.result()

    async def _transcribe_and_publish(
        self, msg: Msg, utt: contract.Utterance, key: str, deliveries: int
    ) -> None:
        try:
            result = await self._speculated_result(utt, key)
            reused = result is not None
            if result is None:
                result = await self._start_transcription(utt)
        except Exception as exc:
            retryable = getattr(exc, "retryable", True)
            self.counts["failed"] += 1
            self.metrics.utterances.labels(outcome="failed").inc()
            if not retryable:
                log.error("utterance %s is unusable, dropping it: %s", key, exc)
                await self._settle(msg, "term")
            elif deliveries >= self.settings.max_deliver:
                self.counts["gave_up"] += 1
                log.error("giving up on utterance %s after %d attempts: %s", key, deliveries, exc)
                await self._settle(msg, "term")
            else:
                log.warning("transcription of %s failed (attempt %d): %s", key, deliveries, exc)
                await self._settle(msg, "nak", self.settings.retry_delay_s)
            return
        if not reused:  # a speculation's time was observed when it ran
            self.metrics.transcribe_s.observe(result.compute_s)
        if result.duration_s > 0 and result.compute_s > 0:
            self.metrics.rtf.observe(result.compute_s / result.duration_s)
        dropped = result.dropped_reason is not None
        if dropped:
            log.info("no speech in %s (%.1f s): %s", key, result.duration_s, result.dropped_reason)
        transcript = self._transcript(utt, result)
        try:
            await self.js.publish(
                contract.event_subject(utt.session, "transcript"),
                contract.encode(transcript),
                headers={"Nats-Msg-Id": f"transcript.{key}"},
            )
        except Exception as exc:  # JetStream unavailable: let the utterance come back
            self.counts["failed"] += 1
            self.metrics.utterances.labels(outcome="publish_failed").inc()
            log.warning("could not publish the transcript of %s: %s", key, exc)
            await self._settle(msg, "nak", self.settings.retry_delay_s)
            return
        await self._settle(msg, "ack")
        if dropped:
            self.counts["dropped"] += 1
            self.metrics.utterances.labels(outcome=f"dropped_{result.dropped_reason}").inc()
        else:
            self.counts["transcribed"] += 1
            self.metrics.utterances.labels(outcome="transcribed").inc()
        self.metrics.latency_s.observe(max(0.0, (transcript.done_ms - utt.cut_ms) / 1000.0))

    def _transcript(self, utt: contract.Utterance, result: object) -> contract.Transcript:
        if result.dropped_reason is not None:
            # no speech: an empty transcript that only says this part is done (and why);
            # no metrics, so its silence does not count as speaking time
            words, metrics, text = [], None, ""
        else:
            words = [contract.Word(w.text, w.start, w.end, w.probability) for w in result.words]
            text = result.text
            metrics = speaking_metrics(
                words,
                result.text,
                result.language,
                result.duration_s,
                pause_threshold_s=self.settings.pause_threshold_s,
            )
        return contract.Transcript(
            session=utt.session,
            utterance_id=utt.utterance_id,
            part=utt.part,
            final=utt.final,
            text=text,
            language=result.language,
            words=words,
            start_ms=utt.start_ms,
            end_ms=utt.end_ms,
            cut_ms=utt.cut_ms,
            done_ms=contract.now_ms(),
            metrics=metrics,
            model=self.model_name,
            worker=self.settings.name,
            question=utt.question,
            attempt=utt.attempt,
            dropped_reason=result.dropped_reason or "",
        )


def load_transcriber(settings: SpeechSettings) -> object:
    """The Whisper model the settings name (blocking: run it in a thread)."""
    from inference.speech.transcriber import Transcriber

    return Transcriber(
        settings.model,
        models_dir=settings.models_dir,
        device=settings.device,
        compute_type=settings.compute_type,
        beam_size=settings.beam_size,
        language=settings.language or None,
        cpu_threads=settings.cpu_threads,
        num_workers=settings.concurrency,
        temperatures=(0.0, 0.2, 0.4) if settings.temperature_fallback else (0.0,),
    )


async def run_speech_worker(bus_settings: BusSettings, settings: SpeechSettings) -> None:
    """Entry point of `intervue worker speech`: load Whisper, serve until cancelled."""
    transcriber = await asyncio.to_thread(load_transcriber, settings)
    metrics = SpeechMetrics()
    await bus.serve(
        bus_settings,
        settings.name,
        lambda nc: SpeechWorker(nc, transcriber, bus_settings, settings, metrics),
        registry=metrics.registry,
        metrics_port=settings.metrics_port,
    )
