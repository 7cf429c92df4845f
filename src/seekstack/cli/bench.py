"""`seekstack bench`: load-test an OpenAI-compatible endpoint; `seekstack bench compare A.json B.json`."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Optional
from urllib.parse import urlsplit

import httpx
import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ..benchmark import compare, run_benchmark
from ..benchmark.datasets import SETS, builtin, from_jsonl
from ..benchmark.loadgen import LoadSpec, split_url
from ..benchmark.report import render_html
from ..benchmark.stats import HEADLINE, lookup, parse_slo
from ..config import is_loopback
from ..errors import InvalidRequestError, ServerUnreachableError
from .common import ApiKeyOption, api_key, console, write

app = typer.Typer(help="Load-test an OpenAI-compatible endpoint (seekstack, vLLM, llama.cpp, Ollama …) and compare runs.",
                  invoke_without_command=True)
out = console()


@app.callback()
def bench(
    ctx: typer.Context,
    base_url: str = typer.Option("http://127.0.0.1:8800/v1", "--base-url", help="OpenAI base URL of the server under test."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Model to ask (default: the first one the server lists)."),
    api_key: Optional[str] = ApiKeyOption,
    num_requests: int = typer.Option(50, "--num-requests", "-n", min=1, max=100_000, help="Requests to send in all."),
    concurrency: int = typer.Option(4, "--concurrency", min=1, max=4096, help="Requests in flight (with --rate: the most in flight)."),
    rate: Optional[float] = typer.Option(None, "--rate", min=0.001, help="Poisson arrivals per second instead of a fixed concurrency."),
    dataset: str = typer.Option("chat", "--dataset", help=f"Built-in prompts: {', '.join(SETS)}."),
    dataset_file: Optional[Path] = typer.Option(None, "--dataset-file", help='JSONL of {"prompt": …} or {"messages": […]}, optional "max_tokens".'),
    long_words: int = typer.Option(1500, "--long-words", min=10, help="Words per prompt of the `long` dataset."),
    max_tokens: int = typer.Option(128, "--max-tokens", min=1, help="Output length asked for per request."),
    ignore_eos: bool = typer.Option(False, "--ignore-eos", help="Generate exactly --max-tokens (llama.cpp, vLLM, SGLang)."),
    slo: Optional[str] = typer.Option(None, "--slo", help="SLOs for goodput, e.g. ttft=500ms,tpot=50ms,e2el=5s."),
    duration: float = typer.Option(300.0, "--duration", min=1, max=86_400, help="Stop after this many seconds, whatever is left."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write the results JSON here."),
    html_report: Optional[Path] = typer.Option(None, "--html", help="Write the HTML report here."),
    label: str = typer.Option("", "--label", help="A name for this run, kept in the JSON."),
    seed: int = typer.Option(0, "--seed", help="Seed for prompt order and Poisson arrivals."),
    warmup: int = typer.Option(0, "--warmup", min=0, max=10_000, help="Requests sent first and not counted (fills caches and pools)."),
    allow_remote: bool = typer.Option(False, "--allow-remote", help="Allow a target that is not on this machine."),
) -> None:
    """Load-test an endpoint: TTFT, TPOT, ITL, E2E (mean, p50, p90, p99), throughput and goodput."""
    if ctx.invoked_subcommand is not None:
        return
    slos = parse_slo(slo)
    check_target(base_url, allow_remote)
    prompts = from_jsonl(dataset_file, num_requests, seed) if dataset_file else builtin(dataset, num_requests, seed, long_words)
    key = api_key_for(api_key, base_url)
    model = model or first_model(base_url, key)
    spec = LoadSpec(base_url=base_url, model=model, prompts=prompts, api_key=key, concurrency=concurrency, rate=rate,
                    max_tokens=max_tokens, ignore_eos=ignore_eos, duration=duration, seed=seed, warmup=warmup)
    shape = f"Poisson {rate:g}/s (≤ {concurrency} in flight)" if rate else f"concurrency {concurrency}"
    out.print(f"[bold]seekstack bench[/] {model} at {base_url}: {num_requests} requests, {shape}, max_tokens {max_tokens}")
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TextColumn("{task.fields[status]}"), console=out, transient=False) as progress:
        task = progress.add_task("requests", total=num_requests, status="")
        tokens = [0, 0]

        def done(r):
            tokens[0] += r.output_tokens
            tokens[1] += r.error is not None
            progress.update(task, advance=1, status=f"{tokens[0]} tokens, {tokens[1]} failed")

        result = run_benchmark(spec, slos, label=label, on_done=done)
    summary = result["summary"]
    if output:
        write(output, json.dumps(result, indent=1) + "\n")
    if html_report:
        write(html_report, render_html(result))
    print_summary(summary)
    for where in filter(None, (output, html_report)):
        out.print(f"[green]wrote[/] {where}")
    if summary["completed"] == 0 and summary["incomplete"] and not summary["failed"]:
        raise InvalidRequestError(f"no request finished within --duration {duration:g} s",
                                  fix="raise --duration, or lower --max-tokens")
    if summary["completed"] == 0:
        raise ServerUnreachableError(f"no request completed; first errors: {'; '.join(summary['errors'][:3]) or 'none'}",
                                     fix="check --base-url, --model and --api-key")


@app.command("compare")
def compare_cmd(a: Path = typer.Argument(..., help="Baseline results JSON."),
                b: Path = typer.Argument(..., help="Results JSON to compare with it.")) -> None:
    """Print B ÷ A for every headline metric (above 1 is better for throughput, worse for latency)."""
    first, second = load_result(a), load_result(b)
    table = Table(title=f"{b.name} ÷ {a.name}")
    for column in ("metric", a.name, b.name, "B ÷ A"):
        table.add_column(column, justify="left" if column == "metric" else "right")
    for label, x, y, ratio, higher in compare(first, second):
        if ratio is None:
            cell = "—"
        else:
            better = ratio > 1 if higher else ratio < 1
            cell = f"[{'green' if better else 'red' if ratio != 1 else 'white'}]{ratio:.3f}[/]"
        table.add_row(label, _fmt(x), _fmt(y), cell)
    out.print(table)


def print_summary(summary: dict) -> None:
    table = Table(title=f"{summary['completed']} completed, {summary['failed']} failed, {summary['incomplete']} incomplete "
                        f"in {summary['duration_s']:.2f} s")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_row("output tokens", str(summary["total_output_tokens"]))
    for label, path, _ in HEADLINE:
        table.add_row(label, _fmt(lookup(summary, path)))
    out.print(table)
    for error in summary["errors"]:
        out.print(f"[red]error:[/] {error}", soft_wrap=True)


def _fmt(value) -> str:
    return "—" if value is None else f"{value:.2f}"


def check_target(base_url: str, allow_remote: bool) -> None:
    """Refuse a target that is not this machine unless --allow-remote: a load test is an attack
    when pointed at the wrong host."""
    host = urlsplit(base_url).hostname
    split_url(base_url)  # validates the URL
    if allow_remote:
        return
    local = is_local(host)
    if local is None:
        raise InvalidRequestError(f"cannot resolve {host!r}", fix="check --base-url")
    if not local:
        raise InvalidRequestError(f"{host} is not this machine; a load test sends many requests",
                                  fix="pass --allow-remote if you mean to load-test it")


def is_local(host: str | None) -> bool | None:
    """Whether every address ``host`` resolves to is a loopback one; None when it does not resolve."""
    try:
        return all(is_loopback(info[4][0]) for info in socket.getaddrinfo(host or "", None))
    except socket.gaierror:
        return None


def api_key_for(explicit: Optional[str], base_url: str) -> Optional[str]:
    """--api-key, else $SEEKSTACK_API_KEY; the admin key file only for a target on this machine
    (never send seekstack's admin key to another host)."""
    if explicit or os.environ.get("SEEKSTACK_API_KEY"):
        return api_key(explicit, None)
    return api_key(None, None) if is_local(urlsplit(base_url).hostname) else None


def first_model(base_url: str, key: Optional[str]) -> str:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    try:
        response = httpx.get(base_url.rstrip("/") + "/models", headers=headers, timeout=10)
    except httpx.TransportError:
        raise ServerUnreachableError(f"cannot reach {base_url}", fix="start the server, or check --base-url") from None
    if response.status_code != 200:
        raise InvalidRequestError(f"{base_url}/models answered HTTP {response.status_code}",
                                  fix="pass --api-key, or name the model with --model")
    models = response.json().get("data") or []
    if not models:
        raise InvalidRequestError(f"{base_url} lists no models", fix="name one with --model")
    return models[0]["id"]


def load_result(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise InvalidRequestError(f"cannot read {path}: {exc.strerror}", fix="pass a file `seekstack bench -o` wrote") from None
    except json.JSONDecodeError:
        raise InvalidRequestError(f"{path} is not JSON", fix="pass a file `seekstack bench -o` wrote") from None
    if not isinstance(data, dict) or "summary" not in data:
        raise InvalidRequestError(f"{path} is not a seekstack bench result", fix="pass a file `seekstack bench -o` wrote")
    return data
