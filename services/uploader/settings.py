"""The uploader's settings (on top of those every service reads, shared/config/settings.py): how
many uploads run at once and in how many processes, its ports, its sweeper and dead-letter drain,
and how it backs off from Facebook (circuit breaker, throttles, usage headers)."""

from __future__ import annotations

from pydantic import Field

from shared.config.settings import CommonSettings, PortOrOff


class UploaderSettings(CommonSettings):
    #: /healthz and /readyz (shared/observability/health_server.py); 0: not served.
    uploader_health_port: PortOrOff = 8001
    #: Uploads one process runs at once (and its prefetch: docs/fair-turns.md says why not
    #: more).
    uploader_concurrency: int = Field(default=4, ge=1, le=64)
    #: Processes, each running UPLOADER_CONCURRENCY uploads: more than one uses more than one
    #: core (one parent starts them, see shared/process/process_pool.py).
    uploader_processes: int = Field(default=1, ge=1, le=32)
    #: /metrics (on METRICS_HOST), one port for all UPLOADER_PROCESSES; 0: off.
    uploader_metrics_port: PortOrOff = 0
    #: On SIGTERM, how long in-flight uploads may take to finish before the process exits.
    shutdown_grace_s: float = Field(default=30.0, ge=0)
    #: The circuit breaker: over BREAKER_WINDOW_S, at least BREAKER_MIN_CALLS Graph calls of
    #: which BREAKER_FAILURE_RATIO failed broadly pause uploads for BREAKER_COOLDOWN_S.
    breaker_window_s: float = Field(default=60.0, gt=0)
    breaker_min_calls: int = Field(default=10, ge=1)
    breaker_failure_ratio: float = Field(default=0.5, gt=0, le=1)
    breaker_cooldown_s: float = Field(default=30.0, ge=0)
    #: The sweeper's quiet time: an image whose message is gone (the broker can lose a
    #: confirmed one in a crash) is sent again after this long (the rule:
    #: services/uploader/sweeper.py). Checked every LOST_MESSAGE_SWEEP_S.
    lost_message_after_s: float = Field(default=120.0, gt=0)
    lost_message_sweep_s: float = Field(default=30.0, gt=0)
    #: The dead-letter drain (services/uploader/dead_letter_drain.py): every
    #: DEAD_LETTER_DRAIN_S it looks at up to DEAD_LETTER_DRAIN_BATCH letters per dead-letter
    #: queue, removes those the desk replayed or purged and indexes those it has not seen.
    dead_letter_drain_s: float = Field(default=60.0, gt=0)
    dead_letter_drain_batch: int = Field(default=200, ge=1, le=10_000)
    #: A throttle without a wait hint backs off (5 s doubling up to the longest retry tier);
    #: once it lasted this long the image fails with the reason (docs/facebook-throttling.md).
    throttle_give_up_s: float = Field(default=4 * 3600.0, gt=0)
    #: Facebook's usage headers at or above this percentage hold uploads to the Page (or, for
    #: X-App-Usage, to every Page) for USAGE_PAUSE_S, in every uploader process.
    usage_threshold_pct: float = Field(default=90.0, gt=0, le=100)
    usage_pause_s: float = Field(default=60.0, gt=0)
    #: Seconds to wait for Facebook to answer a photo upload.
    graph_timeout_s: float = Field(default=120.0, gt=0)

    def production_problems(self) -> list[str]:
        return [*super().production_problems(), *self.token_keys_problems()]
