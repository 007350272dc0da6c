"""The shipped alert rules parse, and each fires on the trouble it names, not before."""

from __future__ import annotations

from pathlib import Path

from tests.alert_rules import check_rules, evaluate, fired, silent, summary_of

UPLOADS = 'albums_jobs_total{queue="uploader.image-uploads",outcome="dead_lettered",code="324"}'


def test_the_rules_file_is_valid() -> None:
    result = check_rules()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 rules found" in result.stdout


def test_each_alert_fires_on_its_trouble_and_not_on_a_healthy_run(tmp_path: Path) -> None:
    cases = [
        {  # An album ages past five hours and stays: fires once it held for 10 minutes.
            "interval": "1m",
            "input_series": [
                {"series": "albums_oldest_publishing_age_seconds", "values": "17400+60x30"}
            ],
            "alert_rule_test": [
                silent("AlbumPublishingTooLong", "5m"),
                fired(
                    "AlbumPublishingTooLong", "25m", summary_of("AlbumPublishingTooLong"), "page"
                ),
            ],
        },
        {  # Two dead letters, then nothing: fires, and goes quiet once 15 minutes passed.
            "interval": "1m",
            "input_series": [{"series": UPLOADS, "values": "0 0 0 1 2 2x40"}],
            "alert_rule_test": [
                silent("DeadLettersGrowing", "2m"),
                fired("DeadLettersGrowing", "10m", summary_of("DeadLettersGrowing"), "ticket"),
                silent("DeadLettersGrowing", "40m"),
            ],
        },
        {  # The breaker opens for a minute (quiet), then stays open (fires).
            "interval": "1m",
            "input_series": [{"series": "albums_circuit_breaker_open", "values": "0 1 0 0 1x20"}],
            "alert_rule_test": [
                silent("CircuitBreakerOpen", "3m"),
                fired("CircuitBreakerOpen", "15m", summary_of("CircuitBreakerOpen"), "page"),
            ],
        },
        {  # A row that waits out a refusal or two is fine; one that never leaves is not.
            "interval": "1m",
            "input_series": [
                {"series": "albums_outbox_oldest_age_seconds", "values": "0 300 0 60+60x30"}
            ],
            "alert_rule_test": [
                silent("OutboxStuck", "5m"),
                fired("OutboxStuck", "20m", summary_of("OutboxStuck"), "page"),
            ],
        },
        {  # A healthy run: albums settle in minutes, no dead letter, breaker shut.
            "interval": "1m",
            "input_series": [
                {"series": "albums_oldest_publishing_age_seconds", "values": "0 60 120 0x30"},
                {"series": UPLOADS, "values": "0x30"},
                {"series": "albums_circuit_breaker_open", "values": "0x30"},
                {"series": "albums_outbox_oldest_age_seconds", "values": "0 2 0x30"},
            ],
            "alert_rule_test": [
                silent(name, "30m")
                for name in (
                    "AlbumPublishingTooLong",
                    "DeadLettersGrowing",
                    "CircuitBreakerOpen",
                    "OutboxStuck",
                )
            ],
        },
    ]
    result = evaluate(tmp_path, cases)
    assert result.returncode == 0, result.stdout + result.stderr
