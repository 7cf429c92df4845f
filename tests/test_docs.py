"""Docs that are tested: the settings reference is generated, and every CLI command is documented."""

import json
import re
import textwrap
from pathlib import Path

import yaml

from seekstack.cli import app
from seekstack.config import ModelConfig, settings_reference

ROOT = Path(__file__).resolve().parents[1]


def test_configuration_reference_is_current():
    doc = (ROOT / "docs" / "configuration.md").read_text()
    assert doc == settings_reference(), "run `make docs` to regenerate docs/configuration.md"


def command_names():
    names = [c.name for c in app.registered_commands]
    for group in app.registered_groups:
        names += [f"{group.name} {c.name}" for c in group.typer_instance.registered_commands]
    return names


def test_every_cli_command_is_in_readme():
    readme = (ROOT / "README.md").read_text()
    for name in command_names():
        assert f"seekstack {name}" in readme, name


def test_error_tree_is_drawn_in_docstring():
    import seekstack.errors as errors

    for name in errors.__all__:
        assert name in errors.__doc__, name


def test_links_in_docs_point_to_files():
    import re

    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "bench" / "README.md"]:
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", doc.read_text()):
            assert (doc.parent / target).exists(), f"{doc.name} links to missing {target}"


def test_readme_config_example_is_valid(tmp_path):
    import re

    from seekstack.config import load_settings

    block = re.search(r"```yaml\n(.*?)```", (ROOT / "README.md").read_text(), re.S).group(1)
    (tmp_path / "seekstack.yaml").write_text(block)
    settings = load_settings(tmp_path / "seekstack.yaml", environ={})
    assert settings.models[0].name == "deepseek-r1-distill-qwen-7b"
    assert settings.models[0].sampling_defaults()["temperature"] == 0.6


def test_operations_guide_lists_every_client_error_code():
    import seekstack.errors as errors

    guide = (ROOT / "docs" / "operations.md").read_text()
    client_facing = [getattr(errors, n) for n in errors.__all__ if n not in ("SeekstackError", "ConfigError", "ServerUnreachableError")]  # CLI-side only
    for exc in client_facing:
        assert f"| {exc.status} | `{exc.code}` |" in guide, exc.__name__


def test_security_doc_has_the_generated_role_table():
    from seekstack.governance.policy import role_table

    from seekstack.markdown import block

    assert block((ROOT / "docs" / "security.md").read_text(), "role-table") == role_table(), "regenerate the table in docs/security.md from governance/policy.py"


def test_observability_doc_has_the_generated_tables():
    from seekstack.config import AlertThresholds
    from seekstack.markdown import block
    from seekstack.observability import metrics_table
    from seekstack.observability.alerts import alerts_table

    doc = (ROOT / "docs" / "observability.md").read_text()
    assert block(doc, "metrics-table") == metrics_table(), "run `make docs`"
    assert block(doc, "alerts-table") == alerts_table(AlertThresholds()), "run `make docs`"


def test_planner_worked_example_matches_the_planner():
    """docs/planner.md's DeepSeek-R1 table is what `seekstack plan` computes."""
    from seekstack.planner import make_plan, parse_hardware
    from seekstack.planner.catalog import catalog_model

    doc = (ROOT / "docs" / "planner.md").read_text()
    r1 = catalog_model("deepseek-r1")
    h200 = make_plan(r1, parse_hardware("8xH200"), quant_name="fp8", context=32768, concurrency=8)
    h100 = make_plan(r1, parse_hardware("8xH100"), quant_name="fp8", context=32768, concurrency=8)
    two = make_plan(r1, parse_hardware("2x8xH100"), quant_name="fp8", context=32768, concurrency=8)
    assert h200.fits and h200.tensor_parallel == 8 and not h100.fits and two.tensor_parallel == 16
    assert f"{h200.per_gpu_bytes / 1e9:.1f} GB of 0.9 × 141" in doc
    assert f"{two.per_gpu_bytes / 1e9:.1f} GB of 72 GB" in doc
    assert f"{h200.kv_bytes / 1e9:.2f} GB, on **every** rank" in doc
    assert f"≈ {h200.decode_tps_single:,.0f} tok/s per sequence" in doc
    assert f"≈ {round(h200.prefill_tps, -2):,.0f} tok/s" in doc
    assert h100.smallest_fix.startswith("quantization q4_k_m") and "16 × H100 (2 nodes of 8)" in h100.smallest_fix


def test_engine_launch_examples_are_what_the_planner_prints():
    """docs/engines.md shows DeepSeek-R1 671B launches; each is the planner's own output, verbatim."""
    import re
    import shlex
    import subprocess
    import sys

    doc = (ROOT / "docs" / "engines.md").read_text()
    examples = re.findall(r"— `seekstack plan ([^`]+)`:\n\n```sh\n(.+?)\n```", doc)
    assert len(examples) == 4
    for args, command in examples:
        out = subprocess.run([sys.executable, "-m", "seekstack", "plan", *args.split(), "--json"],
                             capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        assert shlex.join(json.loads(out.stdout)["launch"]) == command, args


def test_the_balancers_own_503_in_the_operations_guide_is_the_one_the_tests_run():
    from balancer import NONE_READY  # tests/balancer.py: the HAProxy the fleet tests run

    guide = (ROOT / "docs" / "operations.md").read_text()
    head, _, body = NONE_READY.partition("\r\n\r\n")
    assert body.strip() in guide
    for line in head.split("\r\n"):
        assert f"   {line}\n" in guide, line


def test_the_nginx_lines_in_the_operations_guide_are_the_ones_the_tests_run():
    from balancer import NGINX_LOCATION  # tests/balancer.py: the nginx the fleet tests kill a gateway behind

    guide = (ROOT / "docs" / "operations.md").read_text()
    assert textwrap.indent(textwrap.dedent(NGINX_LOCATION), "   ") in guide


def test_the_operations_guide_names_every_policy_section_the_gateways_compare():
    from seekstack.governance.roster import POLICY

    guide = (ROOT / "docs" / "operations.md").read_text()
    paragraph = guide[guide.index("**Keep the policy the same on every gateway.**"):]
    paragraph = paragraph[:paragraph.index("\n\n")]
    assert [s for s in POLICY if f"`{s}" not in paragraph and f".{s}`" not in paragraph] == []


def test_the_keep_alive_example_in_the_operations_guide_is_a_valid_model_entry():
    guide = (ROOT / "docs" / "operations.md").read_text()
    section = guide.split("## Unloading an idle model", 1)[1]
    block = re.search(r"```yaml\n(.*?)```", section, re.S).group(1)
    [entry] = yaml.safe_load(block)["models"]
    assert ModelConfig.model_validate(entry).keep_alive == 900


def test_the_taking_turns_example_in_the_operations_guide_is_a_valid_config():
    from seekstack.config import Settings

    guide = (ROOT / "docs" / "operations.md").read_text()
    section = guide.split("### Models that take turns", 1)[1]
    block = re.search(r"```yaml\n(.*?)```", section, re.S).group(1)
    settings = Settings.model_validate(yaml.safe_load(block))
    assert [m.keep_alive for m in settings.models] == [900, 900, None]


def test_the_fallbacks_example_in_the_operations_guide_is_a_valid_config():
    from seekstack.config import Settings

    guide = (ROOT / "docs" / "operations.md").read_text()
    section = guide.split("## When a whole model cannot answer: fallbacks", 1)[1]
    block = re.search(r"```yaml\n(.*?)```", section, re.S).group(1)
    settings = Settings.model_validate(yaml.safe_load(block))
    assert [(m.fallbacks, m.fallback_on) for m in settings.models] == [
        (["r1-distill"], ["unavailable", "overloaded"]), ([], ["unavailable", "overloaded"]),
        (["r1-distill"], ["context_length"])]


def test_the_retrieval_example_in_the_engines_guide_is_a_valid_config():
    from seekstack.config import Settings

    guide = (ROOT / "docs" / "engines.md").read_text()
    section = guide.split("## Retrieval models: embeddings and rerankers", 1)[1]
    block = re.search(r"```yaml\n(.*?)```", section, re.S).group(1)
    settings = Settings.model_validate(yaml.safe_load(block))
    assert [(m.task, m.fallbacks) for m in settings.models] == [
        ("embeddings", []), ("rerank", ["bge-reranker-gpu"]), ("rerank", [])]
