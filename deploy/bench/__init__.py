"""The benchmarks: `intervue bench load | speech | vision | llm` (DESIGN.md: speed is measured in
benchmarks that print tables, never asserted in tests).

* `deploy.bench.load`: N synthetic candidates (the load harness, `deploy.load`) against a
  running stack;
* `deploy.bench.speech`: end of speech → transcript latency and real-time factor;
* `deploy.bench.vision`: per-frame vision cost against a YOLOv8 baseline, and the engines;
* `deploy.bench.llm`: the language model through the product's client (questions and
  evaluations, Korean and English, over the profiles of `llm_cases.json`) and the vision
  worker and Whisper idle vs while it generates;
* `deploy.bench.tables`: what their Markdown tables share (machine line, p50/p95 cells);
* `deploy.bench.media`: the synthetic face frames the benchmarks, the harness and the
  tests play.

`deploy.bench.cli` holds the ``bench`` command group that `deploy.cli` mounts.
"""
