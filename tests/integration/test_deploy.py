"""`seekstack deploy alerts|dashboard`: every expression parses, and names only metrics /metrics exposes."""

from __future__ import annotations

import json
import subprocess

import promql_parser
import pytest
import yaml
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from conftest import SEEKSTACK
from fakes import FakeNVML
from seekstack.observability.collectors import GpuCollector, StaticCollector

GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$model": ".*", "$replica": ".*"}


def metric_names(expr: str) -> set[str]:
    """Every metric an expression selects, found by really parsing it (a syntax error raises)."""
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    names: set[str] = set()

    def visit(node):
        if isinstance(node, promql_parser.VectorSelector):
            names.add(node.name)

    promql_parser.walk(promql_parser.parse(expr), visit)
    return names


SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}


def exposition_names(text: str) -> set[str]:
    """Series names a page serves, and those its TYPE lines declare (a labelled family with no
    child yet, e.g. reasoning tokens of a model that never reasons, has a TYPE line and no sample)."""
    names = set()
    for family in text_string_to_metric_families(text):
        names |= {s.name for s in family.samples}
        names |= {family.name + suffix for suffix in SUFFIXES.get(family.type, ())}
    return names


@pytest.fixture(scope="module")
def exposed(server) -> set[str]:
    """Sample names the real gateway serves, plus those its GPU and TLS collectors serve where
    there is a GPU (NVML faked: the driver is the edge) and a certificate."""
    server.http.post("/v1/chat/completions", json={"model": "smollm2-135m", "max_tokens": 4, "stream": True,
                                                   "messages": [{"role": "user", "content": "Hi"}]})
    r = server.http.get("/metrics")
    assert r.status_code == 200
    registry = CollectorRegistry()
    registry.register(GpuCollector(FakeNVML()))
    registry.register(StaticCollector("test", certificate_expiry=2e9))
    return exposition_names(r.text) | exposition_names(generate_latest(registry).decode())


def run(*args, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([*SEEKSTACK, *args], capture_output=True, text=True, timeout=60, cwd=cwd)


def test_alert_rules_parse_and_carry_severity_runbook_and_configured_thresholds(tmp_path, exposed):
    config = tmp_path / "seekstack.yaml"
    config.write_text(yaml.safe_dump({"observability": {"alerts": {"gpu_utilization_warning": 0.77, "ttft_p99_ms": 750}}}))
    out = tmp_path / "rules.yml"
    result = run("deploy", "alerts", "--config", str(config), "-o", str(out))
    assert result.returncode == 0, result.stderr
    rules = yaml.safe_load(out.read_text())["groups"][0]["rules"]
    assert len(rules) >= 15
    for rule in rules:
        names = metric_names(rule["expr"])
        assert names and names <= exposed, (rule["alert"], names - exposed)
        assert rule["labels"]["severity"] in ("info", "warning", "critical")
        assert rule["annotations"]["runbook"] and "\n" not in rule["annotations"]["runbook"]
        if "for" in rule:
            promql_parser.parse_duration(rule["for"])
    by_name = {r["alert"]: r for r in rules}
    assert by_name["SeekstackGPUUtilizationWarning"]["expr"].endswith("> 0.77")
    assert by_name["SeekstackTTFTP99High"]["expr"].endswith("> 0.75")
    assert {"SeekstackErrorRateHigh", "SeekstackReplicaDown", "SeekstackCertificateExpiring", "SeekstackScaleUp",
            "SeekstackScaleDown", "SeekstackGPUMemoryCritical", "SeekstackTokenLatencyCritical"} <= set(by_name)
    check = subprocess.run(["promtool", "check", "rules", str(out)], capture_output=True, text=True)  # make test installs it
    assert check.returncode == 0 and "SUCCESS" in check.stdout, check.stdout + check.stderr


def test_dashboard_queries_name_only_metrics_that_metrics_exposes(tmp_path, exposed):
    out = tmp_path / "dashboard.json"
    result = run("deploy", "dashboard", "-o", str(out))
    assert result.returncode == 0, result.stderr
    board = json.loads(out.read_text())
    panels = [p for p in board["panels"] if p["type"] != "row"]
    assert len(panels) >= 20 and len({p["id"] for p in board["panels"]}) == len(board["panels"])
    used = set()
    for panel in panels:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            names = metric_names(target["expr"])
            assert names and names <= exposed, (panel["title"], names - exposed)
            used |= names
    # the signals the issue names each have a panel: per model and replica, engines, GPUs
    for needed in ("seekstack_time_to_first_token_seconds_bucket", "seekstack_time_per_output_token_seconds_bucket",
                   "seekstack_requests_total", "seekstack_replica_up", "seekstack_queue_waiting",
                   "seekstack_engine_predicted_tokens_seconds", "seekstack_gpu_utilization_ratio",
                   "seekstack_gpu_memory_used_bytes", "seekstack_pii_detections_total"):
        assert needed in used, needed
    assert {v["name"] for v in board["templating"]["list"]} == {"datasource", "model", "replica"}


def test_deploy_refuses_an_unwritable_path_in_one_line(tmp_path):
    result = run("deploy", "dashboard", "-o", str(tmp_path / "missing-dir" / "d.json"))
    assert result.returncode == 1
    assert "cannot write" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "missing-dir").exists()


def test_without_o_the_files_go_to_standard_output_and_nothing_is_dropped_in_the_directory(tmp_path):
    rules = run("deploy", "alerts", cwd=tmp_path)
    board = run("deploy", "dashboard", cwd=tmp_path)
    assert rules.returncode == board.returncode == 0
    assert yaml.safe_load(rules.stdout)["groups"][0]["rules"] and json.loads(board.stdout)["panels"]
    assert list(tmp_path.iterdir()) == []


def test_models_taking_turns_often_fires_on_many_unloads_for_room_an_hour_and_not_on_a_few(tmp_path):
    """`promtool test rules` on the rule file as written: models unloaded for room once a minute for
    an hour (60 > 12) fire SeekstackModelsTakingTurnsOften; once every ten minutes (6) does not."""
    rules = tmp_path / "rules.yml"
    assert run("deploy", "alerts", "-o", str(rules)).returncode == 0
    [rule] = [r for r in yaml.safe_load(rules.read_text())["groups"][0]["rules"]
              if r["alert"] == "SeekstackModelsTakingTurnsOften"]
    series = 'seekstack_keep_alive_actions_total{action="evict",model="a"}'

    def case(per_minute: str, expected: list) -> dict:
        return {"interval": "1m", "input_series": [{"series": series, "values": f"0+{per_minute}x90"}],
                "alert_rule_test": [{"eval_time": "80m", "alertname": rule["alert"], "exp_alerts": expected}]}

    fires = [{"exp_labels": rule["labels"], "exp_annotations": rule["annotations"]}]
    test_file = tmp_path / "turns_test.yml"
    test_file.write_text(yaml.safe_dump({"rule_files": [str(rules)], "evaluation_interval": "1m",
                                         "tests": [case("1", fires), case("0.1", [])]}))
    checked = subprocess.run(["promtool", "test", "rules", str(test_file)], capture_output=True, text=True)
    assert checked.returncode == 0 and "SUCCESS" in checked.stdout, checked.stdout + checked.stderr


def test_answered_by_fallback_fires_while_a_model_is_down_and_not_for_long_prompts(tmp_path):
    """`promtool test rules`: fallbacks because deepseek-r1 is unavailable fire
    SeekstackAnsweredByFallback with the models named; fallbacks for long prompts (by design) do not,
    and the alert ends ten minutes after the last fallback."""
    rules = tmp_path / "rules.yml"
    assert run("deploy", "alerts", "-o", str(rules)).returncode == 0
    [rule] = [r for r in yaml.safe_load(rules.read_text())["groups"][0]["rules"]
              if r["alert"] == "SeekstackAnsweredByFallback"]
    labels = {"model": "deepseek-r1", "to": "r1-distill"}
    down = 'seekstack_fallbacks_total{model="deepseek-r1",reason="unavailable",to="r1-distill"}'
    long = 'seekstack_fallbacks_total{model="deepseek-r1",reason="context_length",to="r1-distill"}'
    expanded = {k: v.replace("{{ $labels.model }}", "deepseek-r1").replace("{{ $labels.to }}", "r1-distill")
                .replace("{{ $labels.reason }}", "unavailable") for k, v in rule["annotations"].items()}
    fires = [{"exp_labels": {**rule["labels"], **labels, "reason": "unavailable"}, "exp_annotations": expanded}]
    series = [{"series": down, "values": "0+5x20 100+0x40"}, {"series": long, "values": "0+3x60"}]
    test_file = tmp_path / "fallback_test.yml"
    test_file.write_text(yaml.safe_dump({"rule_files": [str(rules)], "evaluation_interval": "1m", "tests": [
        {"interval": "1m", "input_series": series, "alert_rule_test": [
            {"eval_time": "15m", "alertname": rule["alert"], "exp_alerts": fires},
            {"eval_time": "45m", "alertname": rule["alert"], "exp_alerts": []}]}]}))
    checked = subprocess.run(["promtool", "test", "rules", str(test_file)], capture_output=True, text=True)
    assert checked.returncode == 0 and "SUCCESS" in checked.stdout, checked.stdout + checked.stderr

