"""The benchmarks: `intervue bench load | speech | vision` (DESIGN.md: speed is measured in
benchmarks that print tables, never asserted in tests).

* `deploy.bench.load`: N synthetic candidates (the load harness, `deploy.load`) against a
  running stack;
* `deploy.bench.speech`: end of speech → transcript latency and real-time factor;
* `deploy.bench.vision`: per-frame vision cost against a YOLOv8 baseline, and the engines;
* `deploy.bench.tables`: what their Markdown tables share (machine line, p50/p95 cells);
* `deploy.bench.media`: the synthetic face frames the benchmarks, the harness and the
  tests play.

`deploy.bench.cli` holds the ``bench`` command group that `deploy.cli` mounts.
"""
