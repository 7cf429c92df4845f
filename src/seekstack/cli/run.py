"""`seekstack run MODEL`: chat with a running server in the terminal; streams, reasoning dimmed."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import httpx
import typer

from ..errors import InvalidRequestError, ServerUnreachableError
from .common import ApiKeyOption, ConfigOption, GatewayClient, UrlOption, check, connect, console

out = console()


def run(
    model: str = typer.Argument(..., help="Model id, as listed by `seekstack models`."),
    prompt: Optional[str] = typer.Argument(None, help="Ask once and exit (default: interactive chat; piped stdin is one prompt)."),
    url: Optional[str] = UrlOption,
    config: Optional[Path] = ConfigOption,
    max_tokens: Optional[int] = typer.Option(None, "--max-tokens", min=1, help="Longest answer, in tokens."),
    key: Optional[str] = ApiKeyOption,
) -> None:
    """Chat with MODEL on a running `seekstack serve` (type /bye or Ctrl-D to leave)."""
    gateway = connect(url, key, config)
    base = gateway.url
    history: list[dict] = []
    if prompt is None and not sys.stdin.isatty():
        prompt = sys.stdin.read().strip()
    if prompt is not None:
        _turn(gateway, model, history, prompt, max_tokens)
        return
    out.print(f"[dim]chatting with {model} at {base} — /bye to leave[/]")
    while True:
        try:
            line = out.input("[bold]› [/]").strip()
        except EOFError:
            break
        if line in ("/bye", "/exit", "/quit"):
            break
        if line:
            _turn(gateway, model, history, line, max_tokens)


def _turn(gateway: GatewayClient, model: str, history: list[dict], text: str, max_tokens: Optional[int]) -> None:
    history.append({"role": "user", "content": text})
    body: dict = {"model": model, "messages": history, "stream": True}
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    answer = []
    in_reasoning = False
    try:
        with httpx.stream("POST", gateway.url + "/v1/chat/completions", json=body, headers=gateway.headers,
                          timeout=httpx.Timeout(600, connect=5)) as r:
            if r.status_code != 200:
                r.read()
                history.pop()
                check(r)
            for line in r.iter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                chunk = json.loads(line[6:])
                if "error" in chunk:
                    raise InvalidRequestError(f"the stream failed: {chunk['error'].get('message')}")
                for choice in chunk.get("choices", []):
                    delta = choice.get("delta", {})
                    if delta.get("reasoning_content"):
                        in_reasoning = True
                        out.print(delta["reasoning_content"], style="dim", end="")
                    if delta.get("content"):
                        if in_reasoning:
                            out.print()
                            in_reasoning = False
                        answer.append(delta["content"])
                        out.print(delta["content"], end="", markup=False)
    except httpx.TransportError:
        history.pop()
        raise ServerUnreachableError(f"cannot reach seekstack at {gateway.url}", fix="start it with `seekstack serve`, or pass --url") from None
    out.print()
    history.append({"role": "assistant", "content": "".join(answer)})
