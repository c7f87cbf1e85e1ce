"""Speech: offline Whisper models, transcription with hallucination guards, speaking
metrics, and the speech worker that serves the utterances work queue.

Public surface (import from the submodules):

* `inference.speech.models`: ``prepare_whisper_models``, ``resolve_model``
* `inference.speech.transcriber`: ``Transcriber``, ``TranscriptionResult``
* `inference.speech.metrics`: ``speaking_metrics``
* `inference.speech.worker`: ``SpeechSettings``, ``SpeechWorker``, ``run_speech_worker``
  (the work queue itself: `stream.bus.ensure_utterances_stream`)
* (the speech benchmark, ``intervue bench speech``, is `deploy.bench.speech`)
"""
