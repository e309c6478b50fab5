"""``unibind config``: the effective settings and where each came from (secrets never in clear)."""

from __future__ import annotations

import argparse
from typing import Any

from unibind.retrieval.cli.context import Context
from unibind.retrieval.cli.output import emit_json, format_table
from unibind.retrieval.cli.parser import add_leaf


def cmd_config(ctx: Context, args: argparse.Namespace) -> int:
    rows = ctx.settings.shown()
    if args.json:
        emit_json({r.name: {"value": r.value, "source": r.source, "env": r.env, "flag": r.flag} for r in rows})
        return 0
    origin = {"flag": lambda r: f"flag {r.flag}", "environment": lambda r: f"${r.env}", "default": lambda r: "default"}
    print(format_table(["setting", "value", "from", "flag", "environment", "what"],
                       [[r.name, f"{r.value:g}" if isinstance(r.value, float) else r.value, origin[r.source](r),
                         r.flag, r.env, r.help] for r in rows], max_width=70))
    return 0


def add_commands(sub: Any) -> None:
    sp = add_leaf(sub, "config", "the effective settings (flag > environment > default) and where each came from",
                  cmd_config, ["unibind config", "unibind --device cpu config --json",
                               "UNIBIND_ENCODER=minilm unibind config"])
    sp.add_argument("--encoder", help="the space's encoder spec (as other commands take it)")
    sp.add_argument("--json", action="store_true", help="machine-readable output")
