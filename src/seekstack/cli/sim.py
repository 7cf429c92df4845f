"""`seekstack sim`: the engine simulator (its options are the simulator's own: `seekstack sim --help`)."""

from __future__ import annotations

import sys

import typer


def sim(ctx: typer.Context) -> None:
    """Run an OpenAI-compatible engine simulator (vLLM, SGLang, llama.cpp or OpenAI dialect; no model runs)."""
    from ..sim.cli import main

    sys.exit(main(list(ctx.args)))


SETTINGS = {"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []}
