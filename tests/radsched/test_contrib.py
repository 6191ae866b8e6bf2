"""The operator files in contrib/ are valid and use only metrics the daemon really exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

import aiohttp
import yaml

from radsched.daemon import running
from radsched.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "contrib" / "grafana" / "radsched.json"
ALERTS = ROOT / "contrib" / "prometheus" / "alerts.yml"
# Series Prometheus itself provides, not the daemon.
BUILTIN = {"up"}
_METRIC = re.compile(r"\b((?:radsched|process|python)_[a-z0-9_]+)\b")


def dashboard_exprs() -> list[str]:
    doc = json.loads(DASHBOARD.read_text())
    assert doc["uid"] == "radsched" and doc["panels"]
    ids = [p["id"] for p in doc["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    exprs = [t["expr"] for p in doc["panels"] for t in p.get("targets", [])]
    assert exprs
    return exprs


def alert_exprs() -> list[str]:
    doc = yaml.safe_load(ALERTS.read_text())
    rules = [r for g in doc["groups"] for r in g["rules"]]
    names = [r["alert"] for r in rules]
    assert len(names) == len(set(names))
    for rule in rules:
        assert rule["expr"] and rule["annotations"]["summary"]
        assert rule["labels"]["severity"] in {"page", "ticket"}
    return [str(r["expr"]) for r in rules]


def exported_series(text: str) -> set[str]:
    """Every series name the exposition can carry, including histogram/counter suffixes."""
    names: set[str] = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            names.add(name)
            if kind == "histogram":
                names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
            if kind == "counter" and not name.endswith("_total"):
                names.add(f"{name}_total")
    return names


def test_alert_thresholds_of_the_source_design_are_present() -> None:
    text = ALERTS.read_text()
    assert "for: 2m" in text and 'up{job="radsched"} == 0' in text  # down > 2 minutes
    assert "> 0.05" in text and "radsched_sms_failed_total" in text  # SMS failure rate > 5%
    assert "> 0.01" in text  # error rate > 1%
    assert "radsched_db_transaction_seconds_count" in text  # database failures
    assert "radsched_emr_oldest_pending_age_seconds" in text  # outbox age


async def test_every_metric_used_by_dashboard_and_alerts_is_exported(data_dir: Path) -> None:
    used = {m for e in dashboard_exprs() + alert_exprs() for m in _METRIC.findall(e)}
    settings = Settings(data_dir=data_dir, http_listen="127.0.0.1:0", mllp_listen="127.0.0.1:0")
    async with running(settings) as daemon, aiohttp.ClientSession() as http:
        resp = await http.get(f"http://{daemon.listening['http']}/metrics")
        exported = exported_series(await resp.text())
    missing = sorted(used - exported - BUILTIN)
    assert not missing, f"used in contrib/ but not exported: {missing}"
