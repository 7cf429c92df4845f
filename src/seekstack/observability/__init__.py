"""Observability: Prometheus metrics, OpenTelemetry tracing, JSON logs, alert rules and dashboards.

:class:`Observability` is what the gateway holds: the per-request metrics (or None when
``observability.metrics`` is off), the scrape-time collectors, and tracing.
"""

from __future__ import annotations

from prometheus_client import ProcessCollector

from ..config import Settings
from .collectors import (AuditCollector, EngineMetrics, FleetCollector, GcCollector, GpuCollector, ReplicaCollector, StaticCollector,
                         TrafficCollector, certificate_expiry)
from .metrics import METRICS, GatewayMetrics, metrics_table
from .tracing import Trace, Tracing, stage

__all__ = ["Observability", "GatewayMetrics", "METRICS", "metrics_table", "Trace", "Tracing", "stage"]


class Observability:
    def __init__(self, settings: Settings, nvml=None):
        self.settings = settings
        self.metrics = GatewayMetrics() if settings.observability.metrics else None
        self.tracing = Tracing(settings.observability.tracing)
        self._engines: EngineMetrics | None = None
        self._gc: GcCollector | None = None
        self._nvml = nvml

    def attach(self, deployments, http, audit=None, router=None, autoscaler=None, rollouts=None, fleet=None,
               keep_alive=None) -> None:
        """Register the scrape-time collectors, once the registry of deployments exists."""
        if self.metrics is None or self._engines is not None:
            return
        from .. import __version__

        registry = self.metrics.registry
        tls = self.settings.server.tls
        registry.register(ReplicaCollector(deployments))
        if router is not None:
            registry.register(TrafficCollector(router, autoscaler, rollouts, keep_alive))
        self._engines = EngineMetrics(deployments, http)
        registry.register(self._engines)
        registry.register(GpuCollector(self._nvml))
        ProcessCollector(namespace="seekstack", registry=registry)
        self._gc = GcCollector()
        registry.register(self._gc)
        registry.register(StaticCollector(__version__, certificate_expiry(tls.cert) if tls else None))
        if audit is not None:
            registry.register(AuditCollector(audit))
        if fleet is not None:
            registry.register(FleetCollector(fleet))

    async def render(self) -> bytes:
        """The Prometheus exposition text, with the engines' metrics fetched now."""
        if self._engines is not None:
            await self._engines.scrape()
        return self.metrics.render()

    def shutdown(self) -> None:
        self.tracing.shutdown()
        if self._gc is not None:
            self._gc.close()


def write_docs(doc_path: str) -> None:
    """Regenerate the metric and alert tables of docs/observability.md (``make docs``)."""
    from ..config import AlertThresholds
    from ..markdown import replace_block
    from .alerts import alerts_table

    replace_block(doc_path, "metrics-table", metrics_table())
    replace_block(doc_path, "alerts-table", alerts_table(AlertThresholds()))
