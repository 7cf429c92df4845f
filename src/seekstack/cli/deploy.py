"""`seekstack deploy alerts|dashboard|kubernetes`: files for Prometheus, Grafana and a Kubernetes
cluster, written atomically (a directory: all of it or none)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Optional

import typer

from .. import kubernetes
from ..config import config_data, find_config_file, load_settings
from ..errors import ConfigError
from ..observability.alerts import alerts, render_rules
from ..observability.dashboard import render_dashboard
from .common import console, write

app = typer.Typer(help="Write deployment files: Prometheus alert rules, a Grafana dashboard, Kubernetes manifests.",
                  no_args_is_help=True)
out = console()
CONFIG = typer.Option(None, "--config", "-c", help="seekstack.yaml whose observability.alerts thresholds to use.")


@app.command("alerts")
def deploy_alerts(
    output: Path = typer.Option(Path("-"), "--output", "-o", help="Rule file to write (default: standard output)."),
    config: Optional[Path] = CONFIG,
) -> None:
    """Write the Prometheus alert rules (thresholds from observability.alerts); load them with `rule_files:`."""
    settings = load_settings(config)
    write(output, render_rules(settings.observability.alerts))
    if str(output) != "-":
        out.print(f"[green]wrote[/] {output}: {len(alerts(settings.observability.alerts))} alert rules "
                  "(check with `promtool check rules`)")


@app.command("dashboard")
def deploy_dashboard(
    output: Path = typer.Option(Path("-"), "--output", "-o", help="Dashboard JSON to write (default: standard output)."),
) -> None:
    """Write the Grafana dashboard (import it in Grafana, pick the Prometheus data source)."""
    write(output, render_dashboard())
    if str(output) != "-":
        out.print(f"[green]wrote[/] {output}: import it under Dashboards → New → Import")


@app.command("kubernetes")
def deploy_kubernetes(
    output: Path = typer.Option(..., "--output", "-o", help="Directory to write (Kustomize; `kubectl apply -k DIR`). Replaced whole if it holds an earlier rendering."),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="The seekstack.yaml to put on the cluster (storage.url: PostgreSQL)."),
    image: str = typer.Option(kubernetes.Options.image, "--image", help="The seekstack container image, from your registry."),
    namespace: str = typer.Option("seekstack", "--namespace", "-n", help="Namespace of every object."),
    gateways: int = typer.Option(3, "--gateways", min=1, max=64, help="Gateway pods."),
    max_gateways: Optional[int] = typer.Option(None, "--max-gateways", min=2, max=256, help="Let a HorizontalPodAutoscaler add gateway pods, up to this many, while their CPU is above half a core each (default: a fixed --gateways)."),
    storage_class: Optional[str] = typer.Option(None, "--storage-class", help="Storage class of each gateway's volume (default: the cluster's)."),
    audit_size: str = typer.Option("20Gi", "--audit-size", help="Size of each gateway's volume (its audit chain: audit.max_bytes and some room)."),
    models_claim: Optional[str] = typer.Option(None, "--models-claim", help="A ReadOnlyMany PersistentVolumeClaim holding the model files (and the store), mounted in the engine pods."),
    models_dir: str = typer.Option("/models", "--models-dir", help="Where the models volume is mounted; model paths in the config are under it."),
    gpus_per_node: int = typer.Option(8, "--gpus-per-node", min=1, max=64, help="GPUs a node has: an engine pod (tensor_parallel × pipeline_parallel GPUs) must fit one."),
    prometheus_url: Optional[str] = typer.Option(None, "--prometheus-url", help="The Prometheus that scrapes the gateways (e.g. http://prometheus-operated.monitoring:9090): KEDA reads it to autoscale the models with `autoscale`."),
    prometheus_operator: bool = typer.Option(False, "--prometheus-operator", help="Also render a ServiceMonitor (every gateway's /metrics) and a PrometheusRule (the alert rules); needs the Prometheus Operator's CRDs."),
) -> None:
    """Write Kubernetes manifests for this config: gateways (a StatefulSet on PostgreSQL and Redis), one
    StatefulSet of engine pods per model seekstack starts (a KEDA ScaledObject for an autoscaled one), Services, a
    PodDisruptionBudget and NetworkPolicies; with --prometheus-operator, the scrape and the alert rules."""
    settings = load_settings(config)
    raw = config_data(find_config_file(config))  # with the SEEKSTACK_* overrides: the pods get no such environment
    options = kubernetes.Options(image=image, namespace=namespace, gateways=gateways, max_gateways=max_gateways,
                                 storage_class=storage_class,
                                 audit_size=audit_size, models_claim=models_claim, models_dir=models_dir,
                                 gpus_per_node=gpus_per_node, prometheus_url=prometheus_url, prometheus_operator=prometheus_operator)
    problems = kubernetes.problems(settings, raw, options)
    if problems:
        raise ConfigError(f"cannot render for Kubernetes: {len(problems)} problem(s):\n  " + "\n  ".join(problems),
                          fix="fix them in the config (or the options), then run this again")
    files = kubernetes.render(settings, raw, options)
    _replace_directory(output, files)
    out.print(f"[green]wrote[/] {output}: {', '.join(sorted(files))}")
    out.print("Create the Secrets first (their values never pass through seekstack):", soft_wrap=True)
    for line in kubernetes.secret_commands(settings, options):
        out.print(f"  {line}", soft_wrap=True, markup=False)
    out.print(f"then: kubectl apply -k {output}", soft_wrap=True, markup=False)
    after = kubernetes.after_commands(settings, options)
    if after:
        out.print("and once a gateway is ready:", soft_wrap=True)
        for line in after:
            out.print(f"  {line}", soft_wrap=True, markup=False)


def _replace_directory(output: Path, files: dict[str, str]) -> None:
    """Write ``files`` into a new directory and put it in place of ``output`` (all or nothing)."""
    if output.exists() and (not output.is_dir() or (any(output.iterdir())
                                                    and not (output / "kustomization.yaml").exists())):
        raise ConfigError(f"{output} exists and is not an earlier rendering (no kustomization.yaml)",
                          fix="pick a new --output directory")
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.", dir=output.parent))
        for name, text in files.items():
            (staging / name).write_text(text, encoding="utf-8")
        staging.chmod(0o755)
        if output.exists():
            old = output.with_name(f".{output.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            output.rename(old)
            staging.rename(output)
            shutil.rmtree(old)
        else:
            staging.rename(output)
    except OSError as exc:
        raise ConfigError(f"cannot write {output}: {exc.strerror}", fix="pick a writable --output directory") from None
