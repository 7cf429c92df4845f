"""Command lines of the simulator.

Operators and benchmarks::

    seekstack sim --dialect vllm --model deepseek-r1 --port 8000 [--fault http500] [--crlf] …

Stand-in for an engine's own launch (what ``engine.simulate: true`` runs; the arguments are
parsed as strictly as the engine parses them, so a flag the real engine lacks fails here too)::

    python -m seekstack.sim vllm serve MODEL --port … --served-model-name …
    python -m seekstack.sim sglang.launch_server --model-path … --tp-size …
    python -m seekstack.sim llamacpp-worker SPEC_JSON

In stand-in mode, ``SEEKSTACK_SIM_OPTIONS`` may hold operator options (``--itl-ms 20 --faults-file F``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
import signal
import sys
from pathlib import Path

from ..engines.llamacpp_worker import ENGINE_KEY_ENV
from .engine import Faults, SimConfig, SimEngine
from .server import SimServer


class _Parser(argparse.ArgumentParser):
    """argparse that says what is wrong on one line and exits 2, as the engines' own parsers do."""

    def error(self, message: str):  # type: ignore[override]
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        sys.exit(2)


def operator_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="seekstack sim", description="An OpenAI-compatible engine simulator (no model runs).")
    p.add_argument("--dialect", choices=["vllm", "sglang", "llamacpp", "openai"], default="vllm")
    p.add_argument("--model", action="append", dest="models", help="Served model name (repeat for several).")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--uds", type=Path, help="Listen on this Unix socket instead of TCP.")
    p.add_argument("--api-key", help="Require this bearer key (or set it in the file named by --api-key-file).")
    p.add_argument("--api-key-file", type=Path)
    p.add_argument("--max-model-len", type=int, default=4096)
    p.add_argument("--max-num-seqs", type=int, default=16)
    p.add_argument("--kv-tokens", type=int, help="KV capacity in tokens (default: max-model-len × max-num-seqs).")
    p.add_argument("--ttft-ms", type=float, default=10.0)
    p.add_argument("--prefill-ms-per-1k", type=float, default=2.0)
    p.add_argument("--itl-ms", type=float, default=2.0)
    p.add_argument("--load-factor", type=float, default=0.05)
    p.add_argument("--reasoning", choices=["auto", "on", "off"], default="auto",
                   help="Emit DeepSeek-R1 style reasoning (auto: when the model name says R1).")
    p.add_argument("--reasoning-parser", action="store_true", help="Split reasoning out as the engine's parser does.")
    p.add_argument("--mode", choices=["echo", "random"], default="echo")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output-len", type=int, help="Every answer this many tokens.")
    p.add_argument("--crlf", action="store_true", help="CRLF line ends in SSE.")
    p.add_argument("--fault", action="append", default=[], metavar="NAME[=VALUE]",
                   help="refuse, hang, http500, garbage, break_after=N, slow=F, exit_after=N, fail_rate=F")
    p.add_argument("--faults-file", type=Path, help="JSON {\"*\", a served model or a store NAME@VERSION: {fault: value}}, "
                                                     "re-read when it changes.")
    return p


def vllm_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="vllm serve")
    p.add_argument("model")
    p.add_argument("--host", default="0.0.0.0")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--served-model-name", nargs="+")
    p.add_argument("--max-model-len", type=int, default=4096)
    p.add_argument("--max-num-seqs", type=int, default=256)
    p.add_argument("--tensor-parallel-size", "-tp", type=int, default=1)
    p.add_argument("--pipeline-parallel-size", "-pp", type=int, default=1)
    p.add_argument("--data-parallel-size", "-dp", type=int, default=1)
    p.add_argument("--enable-expert-parallel", action="store_true")
    p.add_argument("--distributed-executor-backend", choices=["ray", "mp", "uni", "external_launcher"])
    p.add_argument("--gpu-memory-utilization", type=float, default=0.9)
    p.add_argument("--quantization", "-q", choices=["fp8", "awq", "gptq", "bitsandbytes", "gguf", "compressed-tensors"])
    p.add_argument("--kv-cache-dtype", choices=["auto", "fp8", "fp8_e4m3", "fp8_e5m2"], default="auto")
    p.add_argument("--reasoning-parser", choices=["deepseek_r1", "deepseek_v3", "qwen3", "granite", "glm45", "mistral"])
    p.add_argument("--enable-prefix-caching", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--api-key")
    p.add_argument("--trust-remote-code", action="store_true")
    p.add_argument("--dtype", default="auto")
    return p


def sglang_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m sglang.launch_server")
    p.add_argument("--model-path", required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=30000)
    p.add_argument("--served-model-name")
    p.add_argument("--context-length", type=int, default=4096)
    p.add_argument("--max-running-requests", type=int, default=256)
    p.add_argument("--tp-size", "--tp", type=int, default=1)
    p.add_argument("--dp-size", "--dp", type=int, default=1)
    p.add_argument("--ep-size", "--ep", type=int, default=1)
    p.add_argument("--enable-dp-attention", action="store_true")
    p.add_argument("--nnodes", type=int, default=1)
    p.add_argument("--node-rank", type=int, default=0)
    p.add_argument("--dist-init-addr")
    p.add_argument("--quantization", choices=["fp8", "awq", "gptq", "bitsandbytes", "w8a8_int8", "w8a8_fp8"])
    p.add_argument("--kv-cache-dtype", choices=["auto", "fp8_e5m2", "fp8_e4m3"], default="auto")
    p.add_argument("--mem-fraction-static", type=float)
    p.add_argument("--reasoning-parser", choices=["deepseek-r1", "deepseek-v3", "qwen3", "glm45", "kimi"])
    p.add_argument("--disable-radix-cache", action="store_true")
    p.add_argument("--is-embedding", action="store_true")  # embedding and cross-encoder (rerank) models
    p.add_argument("--enable-metrics", action="store_true")
    p.add_argument("--api-key")
    p.add_argument("--trust-remote-code", action="store_true")
    return p


def _operator_config(args: argparse.Namespace, faults_file: Path | None = None) -> SimConfig:
    key = args.api_key
    if args.api_key_file is not None:
        key = args.api_key_file.read_text().strip()
    reasoning = {"auto": None, "on": True, "off": False}[args.reasoning]
    return SimConfig(dialect=args.dialect, served_names=tuple(args.models or ["sim"]),
                     max_model_len=args.max_model_len, max_num_seqs=args.max_num_seqs, kv_tokens=args.kv_tokens,
                     ttft_ms=args.ttft_ms, prefill_ms_per_1k=args.prefill_ms_per_1k, itl_ms=args.itl_ms,
                     load_factor=args.load_factor, reasoning=reasoning, reasoning_parser=args.reasoning_parser,
                     mode=args.mode, seed=args.seed, output_len=args.output_len, api_key=key, crlf=args.crlf,
                     faults=Faults.parse(args.fault), faults_file=args.faults_file or faults_file)


def _with_env_options(config: SimConfig) -> SimConfig:
    """Operator options from ``SEEKSTACK_SIM_OPTIONS`` over a stand-in's config (timing, faults)."""
    extra = os.environ.get("SEEKSTACK_SIM_OPTIONS", "")
    if not extra:
        return config
    base = _operator_config(operator_parser().parse_args(shlex.split(extra)))
    from dataclasses import replace

    return replace(config, ttft_ms=base.ttft_ms, prefill_ms_per_1k=base.prefill_ms_per_1k, itl_ms=base.itl_ms,
                   load_factor=base.load_factor, mode=base.mode, seed=base.seed, output_len=base.output_len,
                   faults=base.faults, faults_file=base.faults_file or config.faults_file, crlf=base.crlf,
                   kv_tokens=base.kv_tokens or config.kv_tokens)


def parse(argv: list[str]) -> tuple[SimConfig, dict]:
    """(the simulated engine's config, where to listen: host/port or uds)."""
    faults_file = os.environ.get("SEEKSTACK_SIM_FAULTS")
    faults_path = Path(faults_file) if faults_file else None
    if argv[:2] == ["vllm", "serve"]:
        a = vllm_parser().parse_args(argv[2:])
        config = SimConfig(dialect="vllm", served_names=tuple(a.served_model_name or [a.model]),
                           max_model_len=a.max_model_len, max_num_seqs=a.max_num_seqs,
                           reasoning_parser=a.reasoning_parser is not None,
                           api_key=a.api_key or os.environ.get("VLLM_API_KEY"), faults_file=faults_path,
                           argv=tuple(argv))
        return _with_env_options(config), {"host": a.host, "port": a.port}
    if argv[:1] == ["sglang.launch_server"]:
        a = sglang_parser().parse_args(argv[1:])
        config = SimConfig(dialect="sglang", served_names=(a.served_model_name or a.model_path,),
                           max_model_len=a.context_length, max_num_seqs=a.max_running_requests,
                           reasoning_parser=a.reasoning_parser is not None, api_key=a.api_key,
                           faults_file=faults_path, argv=tuple(["python", "-m", *argv]))
        return _with_env_options(config), {"host": a.host, "port": a.port}
    if argv[:1] == ["llamacpp-worker"]:
        spec = json.loads(argv[1])
        config = SimConfig(dialect="llamacpp", served_names=(spec.get("served_name") or "model",),
                           max_model_len=spec["n_ctx"] // spec["n_parallel"], max_num_seqs=spec["n_parallel"],
                           reasoning_parser=spec.get("reasoning") is not None, faults_file=faults_path,
                           api_key=os.environ.get(ENGINE_KEY_ENV), argv=tuple(argv),
                           version=store_version(spec["model_path"]))
        host = spec["host"]
        where = {"uds": Path(host)} if host.endswith(".sock") else {"host": host, "port": spec["port"]}
        return _with_env_options(config), where
    args = operator_parser().parse_args(argv)
    return _operator_config(args, faults_path), ({"uds": args.uds} if args.uds else {"host": args.host, "port": args.port})


def store_version(model_path: str) -> str | None:
    """``NAME@VERSION`` of a model file in the store (``…/snapshots/NAME/VERSION/file``), else None."""
    parts = Path(model_path).parts
    if "snapshots" in parts[:-2]:
        at = len(parts) - 1 - parts[::-1].index("snapshots")
        if at + 2 < len(parts):
            return f"{parts[at + 1]}@{parts[at + 2]}"
    return None


async def serve(config: SimConfig, where: dict) -> None:
    server = await SimServer(SimEngine(config), **where).start()
    launch = " ".join(shlex.quote(a) for a in config.argv) if config.argv else "(operator mode)"
    print(f"seekstack sim: SIMULATING {config.dialect} (no model runs) — serving {', '.join(config.served_names)} "
          f"on {server.base_url}; stands in for: {launch}", file=sys.stderr, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.close()


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parent = os.environ.get("SEEKSTACK_PARENT_PID")
    if parent and argv[:1] in (["vllm"], ["sglang.launch_server"], ["llamacpp-worker"]):
        from ..engines.lifeline import die_with_parent

        die_with_parent(int(parent))
    try:
        config, where = parse(argv)
    except (OSError, ValueError) as exc:
        print(f"seekstack sim: error: {exc}", file=sys.stderr)
        return 2
    try:
        asyncio.run(serve(config, where))
    except OSError as exc:
        place = where.get("uds") or f"{where.get('host')}:{where.get('port')}"
        why = os.strerror(exc.errno).lower() if exc.errno else str(exc)
        print(f"seekstack sim: error: cannot listen on {place} ({why}) — pick another --port", file=sys.stderr)
        return 1
    return 0
