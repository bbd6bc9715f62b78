"""The performance gate's default thresholds (a light module: the CLI reads it at import)."""

from __future__ import annotations

# Shared 2-core CI runners differ by about 5% from run to run; twice that is a real regression.
DEFAULT_MAX_THROUGHPUT_DROP_PCT = 10.0
# Tails move more than means between identical runs; a quarter more is past that noise.
DEFAULT_MAX_P99_INCREASE_PCT = 25.0
# Below this many milliseconds a p99 change is scheduler jitter, whatever the percentage.
DEFAULT_MIN_P99_INCREASE_MS = 2.0
