"""``unibind head train|list|show|activate``: the trained heads that map a modality into a space."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from unibind.retrieval.cli.context import Context
from unibind.retrieval.cli.output import emit_json, format_table
from unibind.retrieval.cli.parser import add_group, add_hidden_alias, add_leaf, common


def _head_row(h: Any) -> dict[str, Any]:
    m = h.metrics or {}
    return {"modality": h.modality.name, "version": h.version, "active": h.active, "d_in": h.d_in, "d_out": h.d_out,
            "val_r1": m.get("val_r1"), "untrained_val_r1": m.get("untrained_val_r1"), "epochs": m.get("epochs"),
            "pairs": h.n_pairs, "created_at": h.created_at}


def cmd_list(ctx: Context, args: argparse.Namespace) -> int:
    from unibind.indexer.modalities.registry import find_modality
    from unibind.indexer.modalities.versions import list_heads

    space = ctx.space()
    with ctx.db.session() as session:
        modality = find_modality(session, space, args.modality) if args.modality else None
        rows = [_head_row(h) for h in list_heads(session, space, modality)]
    if args.json:
        emit_json(rows)
    elif not rows:
        print("no heads yet: unibind head train --modality M --pairs PAIRS.jsonl [--features FILE]")
    else:
        print(format_table(list(rows[0]), [list(r.values()) for r in rows]))
    return 0


def _find(ctx: Context, args: argparse.Namespace) -> tuple[int, int, dict[str, Any]]:
    """(modality id, head id, the head's details) of --modality's --version (default: the active one)."""
    from unibind.indexer.index.data_home import DataHome
    from unibind.indexer.modalities.registry import find_modality
    from unibind.indexer.modalities.versions import find_head

    space = ctx.space()
    with ctx.db.session() as session:
        modality = find_modality(session, space, args.modality)
        head = find_head(session, modality, args.version)
        path = str(DataHome(ctx.db, ctx.home).resolve(head.path))
        details = {**_head_row(head), "path": path, "file_sha256": head.file_sha256, "data_sha256": head.data_sha256,
                   "hyperparams": head.hyperparams,
                   "metrics": {k: v for k, v in (head.metrics or {}).items() if k != "history"}}
        return modality.id, head.id, details


def cmd_show(ctx: Context, args: argparse.Namespace) -> int:
    _, _, details = _find(ctx, args)
    if args.json:
        emit_json(details)
    else:
        width = max(len(k) for k in details)
        print("\n".join(f"{k.ljust(width)}  {json.dumps(v) if isinstance(v, dict) else v}" for k, v in details.items()))
    return 0


def cmd_activate(ctx: Context, args: argparse.Namespace) -> int:
    from unibind.indexer.gallery.items import reproject

    modality_id, head_id, _ = _find(ctx, args)
    n = reproject(ctx.db, ctx.home, ctx.device, modality_id, activate=head_id)
    msg = {"modality": args.modality, "active_version": args.version, "reprojected_items": n}
    emit_json(msg) if args.json else print(f"{args.modality}: head v{args.version} is active; {n} gallery items re-projected")
    return 0


def cmd_train(ctx: Context, args: argparse.Namespace) -> int:
    from unibind.indexer.training.from_pairs import HeadJob, train_modality_head
    from unibind.indexer.training.infonce import HeadTrainConfig

    space = ctx.space()
    config = HeadTrainConfig(temperature=args.temperature, learn_temperature=args.learn_temperature,
                             symmetric=args.symmetric, lr=args.lr, weight_decay=args.weight_decay,
                             batch_size=args.batch_size, max_epochs=args.epochs, patience=args.patience,
                             val_fraction=args.val_fraction, seed=args.seed)
    job = HeadJob(modality=args.modality, pairs=Path(args.pairs), features=Path(args.features) if args.features else None,
                  image_encoder=args.image_encoder, activate=not args.no_activate, config=config)
    report = train_modality_head(ctx.db, ctx.home, ctx.device, space, job, progress=True)
    n = report.reprojected_items
    if args.json:
        from unibind.indexer.modalities.versions import jsonable

        emit_json(jsonable(report.__dict__))
        return 0
    m = report.metrics
    print(f"trained {report.modality} head v{report.version} ({'active' if report.active else 'inactive'}) on "
          f"{report.samples} samples / {report.descriptions} descriptions in {report.seconds:.1f}s: validation R@1 "
          f"{m.get('val_r1', float('nan')):.3f} (untrained {m.get('untrained_val_r1', float('nan')):.3f}), "
          f"{m.get('epochs')} epochs")
    if n:
        print(f"{n} gallery items re-projected")
    return 0


def add_commands(sub: Any) -> None:
    group = add_group(sub, "head", "train, list, show or activate modality heads")
    add_hidden_alias(sub, "heads", sub.choices["head"])  # the old name (deprecated)

    sp = add_leaf(group, "train", "train a head that maps a modality's encoder outputs into the space (InfoNCE "
                                  "against the descriptions)", cmd_train, [
        "unibind head train --modality audio --pairs pairs.jsonl --features audio.npy",
        "unibind head train --modality image --pairs image_pairs.jsonl --epochs 50 --no-activate",
    ])
    sp.add_argument("--modality", required=True, help="the modality (image, audio, ...)")
    sp.add_argument("--pairs", required=True, metavar="PAIRS.jsonl",
                    help="JSONL of {\"input\": path-or-row, \"description\": ..., \"label\": ...}")
    sp.add_argument("--features", help="the features file (.npy, .pt, .jsonl) whose rows \"input\" names")
    sp.add_argument("--image-encoder", help="image: the image tower (default: the space's encoder)")
    sp.add_argument("--no-activate", action="store_true", help="keep the current active version")
    sp.add_argument("--temperature", type=float, default=0.07, help="InfoNCE temperature (default 0.07)")
    sp.add_argument("--learn-temperature", action="store_true", help="learn the temperature (CLIP's logit scale)")
    sp.add_argument("--symmetric", action="store_true", help="average with the description→sample loss")
    sp.add_argument("--lr", type=float, default=1e-3, help="AdamW learning rate (default 1e-3)")
    sp.add_argument("--weight-decay", type=float, default=0.01, help="AdamW weight decay (default 0.01)")
    sp.add_argument("--batch-size", type=int, default=256, help="pairs per batch (default 256)")
    sp.add_argument("--epochs", type=int, default=100, help="at most this many epochs (default 100)")
    sp.add_argument("--patience", type=int, default=5, help="stop after this many epochs without a better val loss")
    sp.add_argument("--val-fraction", type=float, default=0.1, help="samples held out for validation (default 0.1)")
    sp.add_argument("--seed", type=int, default=0, help="seed of the split and the initialisation (default 0)")
    common(sp)

    sp = add_leaf(group, "list", "every head version with its validation R@1", cmd_list,
                  ["unibind head list", "unibind head list --modality audio --json"])
    sp.add_argument("--modality", help="only this modality's heads")
    common(sp)

    sp = add_leaf(group, "show", "one head version: its file, hashes, hyperparameters and metrics", cmd_show,
                  ["unibind head show --modality audio", "unibind head show --modality audio --version 2 --json"])
    sp.add_argument("--modality", required=True, help="the modality")
    sp.add_argument("--version", type=int, help="the head version (default: the active one)")
    common(sp)

    sp = add_leaf(group, "activate", "make a head version the active one and re-project the modality's gallery",
                  cmd_activate, ["unibind head activate --modality audio --version 1"])
    sp.add_argument("--modality", required=True, help="the modality")
    sp.add_argument("--version", type=int, required=True, help="the head version")
    common(sp)
