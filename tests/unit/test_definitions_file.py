"""deploy/rabbitmq/definitions.json holds the same policies the uploader applies, so an operator
importing the file and a service starting agree (they cannot drift apart unnoticed)."""

import json
from pathlib import Path

from shared.config.settings import CommonSettings
from shared.contracts import topology

DEFINITIONS = Path(__file__).resolve().parents[2] / "deploy" / "rabbitmq" / "definitions.json"


def test_the_file_holds_the_policies_the_code_applies_with_the_default_settings() -> None:
    settings = CommonSettings()
    vhost = json.loads(DEFINITIONS.read_text())["vhosts"][0]["name"]
    wanted = [
        {"vhost": vhost, "name": spec.name, **spec.body()}
        for spec in topology.policy_specs(settings.delivery_limit, settings.dead_letter_max_length)
    ]
    policies = json.loads(DEFINITIONS.read_text()).get("policies")
    assert policies == wanted
