"""``unibind modality add|list``: the feature modalities an external encoder feeds into a space."""

from __future__ import annotations

import argparse
from typing import Any

from unibind.retrieval.cli.context import Context
from unibind.retrieval.cli.output import emit_json, format_table
from unibind.retrieval.cli.parser import add_group, add_leaf, common
from unibind.schema.errors import Conflict, InvalidInput


def cmd_add(ctx: Context, args: argparse.Namespace) -> int:
    from unibind.indexer.modalities.registry import get_modality, register_modality

    if args.name in ("text", "image"):
        raise InvalidInput(f"modality {args.name!r} is built in: it needs no registration")
    space = ctx.space()
    with ctx.db.transaction() as session:
        taken = get_modality(session, space, args.name)
        if taken is not None and taken.input_dim != args.dim:  # the name is taken: a conflict with the store, exit 3
            raise Conflict(f"modality {args.name!r} of space {space.encoder} is registered with input dimension "
                           f"{taken.input_dim}, not {args.dim}: the name is taken (register {args.dim}-d features "
                           f"under another name)")
        m = register_modality(session, space, args.name, dim=args.dim, encoder=args.source)
        row = {"name": m.name, "kind": m.kind.value, "input_dim": m.input_dim, "source": m.encoder}
    emit_json(row) if args.json else print(f"modality {row['name']!r}: {row['input_dim']}-d features into {space.encoder}")
    return 0


def cmd_list(ctx: Context, args: argparse.Namespace) -> int:
    from unibind.indexer.modalities.registry import list_modalities

    space = ctx.space()
    with ctx.db.session() as session:
        rows = [{"name": "text", "kind": "text", "input_dim": space.dim, "source": space.encoder}]
        rows += [{"name": m.name, "kind": m.kind.value, "input_dim": m.input_dim, "source": m.encoder}
                 for m in list_modalities(session, space) if m.name != "text"]
    if args.json:
        emit_json(rows)
    else:
        print(format_table(["name", "kind", "input_dim", "source"], [list(r.values()) for r in rows]))
    return 0


def add_commands(sub: Any) -> None:
    group = add_group(sub, "modality", "register a feature modality (name and input dimension), or list them")
    sp = add_leaf(group, "add", "register a feature modality: its name and the dimension of its encoder's vectors",
                  cmd_add, ['unibind modality add lidar --dim 256 --source "PointBind, 256-d"'])
    sp.add_argument("name", metavar="NAME", help="the modality (audio, point, lidar, ...)")
    sp.add_argument("--dim", type=int, required=True, help="the dimension of the external encoder's vectors")
    sp.add_argument("--source", help="which encoder makes them (e.g. 'ImageBind audio')")
    common(sp)
    sp = add_leaf(group, "list", "the space's modalities: text, image and the registered feature modalities",
                  cmd_list, ["unibind modality list", "unibind modality list --json"])
    common(sp)
