"""OpenTelemetry tracing of request stages, exported over OTLP/HTTP. Off by default.

When on, each request gets a root span (kind SERVER, continuing a caller's W3C
``traceparent``) as it arrives, so its trace id is known at once: the gateway returns it in
``x-trace-id`` and writes it into the audit record. Stages are timed with
``with stage(trace, "quota"):`` and become child spans when the request ends; the engine's
time to first token and the stream are derived from the request's token times. Nothing is
made "current" in the context, so streaming generators cannot leak a context across yields.

When off, :meth:`Tracing.begin` returns None and :func:`stage` a shared no-op context: the
request path pays a function call.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

from ..config import TracingConfig

_NO_STAGE = contextlib.nullcontext()


class Trace:
    """One request's root span and the stages timed under it (monotonic seconds)."""

    __slots__ = ("root", "trace_id", "stages", "_epoch_ns", "_mono")

    def __init__(self, root):
        self.root = root
        self.trace_id = format(root.get_span_context().trace_id, "032x")
        self.stages: list[tuple[str, float, float, dict[str, Any]]] = []
        self._epoch_ns = time.time_ns()
        self._mono = time.monotonic()

    def ns(self, mono: float) -> int:
        return self._epoch_ns + int((mono - self._mono) * 1e9)

    def add(self, name: str, start: float, end: float, **attributes: Any) -> None:
        self.stages.append((name, start, end, attributes))


class _Stage:
    __slots__ = ("trace", "name", "start")

    def __init__(self, trace: Trace, name: str):
        self.trace, self.name = trace, name

    def __enter__(self):
        self.start = time.monotonic()
        return self

    def __exit__(self, *exc):
        self.trace.add(self.name, self.start, time.monotonic(), **({"error": True} if exc[0] else {}))
        return False


def stage(trace: Trace | None, name: str):
    """Time a stage of the request as a child span (a no-op without tracing)."""
    return _NO_STAGE if trace is None else _Stage(trace, name)


class Tracing:
    def __init__(self, config: TracingConfig):
        self.enabled = config.enabled
        self._provider = None
        if not self.enabled:
            return
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.propagators.textmap import DefaultGetter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
        from opentelemetry.trace import SpanKind, set_span_in_context
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        from .. import __version__

        self._provider = TracerProvider(
            resource=Resource.create({"service.name": config.service_name, "service.version": __version__}),
            sampler=ParentBased(TraceIdRatioBased(config.sample_ratio)))
        self._provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=config.endpoint,
                                                                              headers=dict(config.headers))))
        self._tracer = self._provider.get_tracer("seekstack")
        self._propagator = TraceContextTextMapPropagator()
        self._getter = DefaultGetter()
        self._server = SpanKind.SERVER
        self._in_context = set_span_in_context

    def begin(self, method: str, route: str, headers: list[tuple[bytes, bytes]]) -> Trace | None:
        """Start the request's root span (continuing an incoming ``traceparent``)."""
        if not self.enabled:
            return None
        carrier = {k.decode("latin-1"): v.decode("latin-1") for k, v in headers if k in (b"traceparent", b"tracestate")}
        parent = self._propagator.extract(carrier) if carrier else None
        root = self._tracer.start_span(f"{method} {route}", context=parent, kind=self._server,
                                       attributes={"http.request.method": method, "http.route": route})
        return Trace(root)

    def end(self, trace: Trace, status: int, attributes: dict[str, Any]) -> None:
        """Turn the timed stages into child spans and end the root span."""
        if not trace.root.is_recording():  # sampled out: nothing to export
            trace.root.end()
            return
        context = self._in_context(trace.root)
        for name, start, end, attrs in trace.stages:
            span = self._tracer.start_span(name, context=context, start_time=trace.ns(start), attributes=attrs)
            span.end(end_time=trace.ns(end))
        trace.root.set_attributes({"http.response.status_code": status,
                                   **{k: v for k, v in attributes.items() if v is not None}})
        if status >= 500:
            from opentelemetry.trace import Status, StatusCode

            trace.root.set_status(Status(StatusCode.ERROR))
        trace.root.end()

    def shutdown(self) -> None:
        if self._provider is not None:
            self._provider.shutdown()  # flushes what is queued
