"""CLI commands of the unified space: modality, heads, gallery and cross-modal search."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from unibind.retrieval.cli.output import emit_json, format_table


def _space(ctx: Any, encoder: str | None):  # type: ignore[no-untyped-def]
    from unibind.indexer.store.contents import find_space

    with ctx.db.session() as session:
        return find_space(session, encoder)


def query_vectors(ctx: Any, space: Any, args: argparse.Namespace) -> tuple[list[str], np.ndarray, str]:
    """(query names, [B, d] vectors of the space, modality) from --text / --image / --features --modality."""
    from unibind.indexer.readers.features import read_features
    from unibind.indexer.modalities.projection import load_projection

    given = [n for n, v in (("--text", args.text), ("--image", args.image), ("--features", args.features)) if v]
    if len(given) != 1:
        raise ValueError("give exactly one kind of query: --text, --image or --features (with --modality)")
    if args.features:
        if not args.modality:
            raise ValueError("--features needs --modality NAME (which encoder made them)")
        if args.modality in ("text", "image"):
            raise ValueError(f"modality {args.modality!r} does not take feature vectors: give its queries with --{args.modality}")
        projection = load_projection(ctx.db, space, args.modality, ctx.device, home=ctx.home)
        fs = read_features(args.features, dim=projection.input_dim, modality=args.modality)
        names = [f"{args.features}[{i}]" for i in range(len(fs))]
        return names, projection.features(fs.vectors, args.features), args.modality
    if args.modality and args.modality != ("text" if args.text else "image"):
        raise ValueError(f"--modality {args.modality} does not go with {given[0]}")
    if args.text:
        return list(args.text), load_projection(ctx.db, space, "text", ctx.device, home=ctx.home).texts(args.text), "text"
    projection = load_projection(ctx.db, space, "image", ctx.device, home=ctx.home)
    return list(args.image), projection.images(args.image), "image"


# -- modality -----------------------------------------------------------------------------------------
def cmd_modality(ctx: Any, args: argparse.Namespace) -> int:
    from unibind.indexer.modalities.registry import list_modalities, register_modality

    space = _space(ctx, args.encoder)
    if args.action == "add":
        if not args.name or args.dim is None:
            raise ValueError("modality add needs a NAME and --dim D (the external encoder's output dimension)")
        if args.name in ("text", "image"):
            raise ValueError(f"modality {args.name!r} is built in: it needs no registration")
        with ctx.db.transaction() as session:
            m = register_modality(session, space, args.name, dim=args.dim, encoder=args.source)
            row = {"name": m.name, "kind": m.kind.value, "input_dim": m.input_dim, "source": m.encoder}
        emit_json(row) if args.json else print(f"modality {row['name']!r}: {row['input_dim']}-d features into {space.encoder}")
        return 0
    with ctx.db.session() as session:
        rows = [{"name": "text", "kind": "text", "input_dim": space.dim, "source": space.encoder}]
        rows += [{"name": m.name, "kind": m.kind.value, "input_dim": m.input_dim, "source": m.encoder}
                 for m in list_modalities(session, space) if m.name != "text"]
    if args.json:
        emit_json(rows)
    else:
        print(format_table(["name", "kind", "input_dim", "source"], [list(r.values()) for r in rows]))
    return 0


# -- heads --------------------------------------------------------------------------------------------
def _head_row(h: Any) -> dict[str, Any]:
    m = h.metrics or {}
    return {"modality": h.modality.name, "version": h.version, "active": h.active, "d_in": h.d_in, "d_out": h.d_out,
            "val_r1": m.get("val_r1"), "untrained_val_r1": m.get("untrained_val_r1"), "epochs": m.get("epochs"),
            "pairs": h.n_pairs, "created_at": h.created_at}


def cmd_heads(ctx: Any, args: argparse.Namespace) -> int:
    from unibind.indexer.modalities.versions import find_head, list_heads
    from unibind.indexer.modalities.registry import find_modality

    space = _space(ctx, args.encoder)
    if args.action == "train":
        return _train(ctx, space, args)
    with ctx.db.session() as session:
        modality = find_modality(session, space, args.modality) if args.modality else None
        if args.action == "list":
            rows = [_head_row(h) for h in list_heads(session, space, modality)]
            if args.json:
                emit_json(rows)
            elif not rows:
                print("no heads yet: unibind heads train --modality M --pairs PAIRS.jsonl [--features FILE]")
            else:
                print(format_table(list(rows[0]), [list(r.values()) for r in rows]))
            return 0
        if modality is None:
            raise ValueError(f"heads {args.action} needs --modality NAME")
        head = find_head(session, modality, args.version)
        modality_id = modality.id
        from unibind.indexer.index.data_home import DataHome

        path = str(DataHome(ctx.db, ctx.home).resolve(head.path))
        head_id, details = head.id, {**_head_row(head), "path": path, "file_sha256": head.file_sha256,
                                     "data_sha256": head.data_sha256, "hyperparams": head.hyperparams,
                                     "metrics": {k: v for k, v in (head.metrics or {}).items() if k != "history"}}
    if args.action == "show":
        if args.json:
            emit_json(details)
        else:
            width = max(len(k) for k in details)
            print("\n".join(f"{k.ljust(width)}  {json.dumps(v) if isinstance(v, dict) else v}" for k, v in details.items()))
        return 0
    if args.version is None:
        raise ValueError("heads activate needs --version N")
    from unibind.indexer.gallery.items import reproject

    n = reproject(ctx.db, ctx.home, ctx.device, modality_id, activate=head_id)
    msg = {"modality": args.modality, "active_version": args.version, "reprojected_items": n}
    emit_json(msg) if args.json else print(f"{args.modality}: head v{args.version} is active; {n} gallery items re-projected")
    return 0


def _train(ctx: Any, space: Any, args: argparse.Namespace) -> int:
    from unibind.indexer.training.from_pairs import HeadJob, train_modality_head
    from unibind.indexer.training.infonce import HeadTrainConfig

    if not args.modality or not args.pairs:
        raise ValueError("heads train needs --modality NAME and --pairs PAIRS.jsonl")
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


# -- gallery ------------------------------------------------------------------------------------------
def _new_items(args: argparse.Namespace, n: int, uris: list[str] | None):  # type: ignore[no-untyped-def]
    from unibind.indexer.gallery.items import NewItem
    from unibind.indexer.readers.pairs import read_meta

    if args.meta:
        metas = read_meta(args.meta, n)
        return [NewItem(uri=m.uri or (uris[i] if uris else None), label=m.label or args.label, meta=m.meta or None)
                for i, m in enumerate(metas)]
    return [NewItem(uri=uris[i] if uris else None, label=args.label) for i in range(n)]


def _rows_as_items(rows: list[dict[str, Any]], source: str, label: str | None):  # type: ignore[no-untyped-def]
    """Items from the other fields of a features JSONL's rows (uri and label taken out, the rest is metadata)."""
    from unibind.indexer.gallery.items import NewItem
    from unibind.indexer.readers.pairs import item_meta

    metas = [item_meta(r, f"{source}: row {i}", i) for i, r in enumerate(rows)]
    return [NewItem(uri=m.uri, label=m.label or label, meta=m.meta or None) for m in metas]


def cmd_gallery(ctx: Any, args: argparse.Namespace) -> int:
    from unibind.indexer.gallery.items import gallery_index, remove_items, reproject, summarize
    from unibind.indexer.modalities.registry import find_modality, list_modalities

    space = _space(ctx, args.encoder)
    if args.action == "add":
        return _gallery_add(ctx, space, args)
    with ctx.db.session() as session:
        mods = [find_modality(session, space, args.modality)] if args.modality else list_modalities(session, space)
        for m in mods:
            _ = m.space
        if args.action == "list":
            rows = [s.__dict__ for s in summarize(session, mods)]
    if args.action == "list":
        if args.json:
            emit_json(rows)
        elif not rows:
            print("no gallery yet: unibind gallery add --modality M (--files ... | --features FILE --meta META.jsonl)")
        else:
            print(format_table(list(rows[0]), [list(r.values()) for r in rows]))
        return 0
    if args.action == "remove":
        if not args.modality or (args.label is None and not args.all):
            raise ValueError("gallery remove needs --modality NAME and --label L (or --all)")
        n = remove_items(ctx.db, ctx.home, ctx.device, mods[0], None if args.all else args.label)
        emit_json({"removed": n}) if args.json else print(f"removed {n} {args.modality} items")
        return 0
    results, failed = [], False
    for m in mods:
        index = gallery_index(ctx.db, ctx.home, ctx.device, m)
        if args.action == "verify":
            check = index.verify()
            failed |= not check.ok
            results.append({"modality": m.name, "ok": check.ok, "items": check.n_store, "file": check.n_file,
                            "problems": check.problems})
        else:  # from the stored encoder outputs, through the active head: vectors and index agree again
            n = reproject(ctx.db, ctx.home, ctx.device, m.id, factory=args.factory)
            with ctx.db.session() as session:
                factory = index.factory(session)
            results.append({"modality": m.name, "path": str(index.path), "vectors": n, "factory": factory})
    if args.json:
        emit_json(results)
    else:
        for r in results:
            if args.action == "verify":
                print(f"{'ok' if r['ok'] else 'STALE'}  {r['modality']}: {r['file']} vectors in the file, {r['items']} items")
                for p in r["problems"]:
                    print(f"      - {p}")
            else:
                print(f"rebuilt {r['path']}: {r['vectors']} vectors ({r['factory']})")
    return 1 if failed else 0


def _gallery_add(ctx: Any, space: Any, args: argparse.Namespace) -> int:
    from unibind.indexer.readers.features import read_features
    from unibind.indexer.gallery.items import add_items
    from unibind.indexer.modalities.projection import ensure_image_modality, load_projection

    if not args.modality:
        raise ValueError("gallery add needs --modality NAME")
    if args.label is not None and not (0 < len(args.label.strip()) <= 500):
        raise ValueError("--label must be a non-empty string of at most 500 characters")
    if bool(args.files) == bool(args.features):
        raise ValueError("gallery add needs either --files (images) or --features FILE, not both")
    created = False
    if args.files:
        if args.modality != "image":
            raise ValueError(f"--files adds images; modality {args.modality!r} takes --features FILE --meta META.jsonl")
        for f in args.files:
            if not Path(f).is_file():
                raise FileNotFoundError(f"image file not found: {f}")
        projection = load_projection(ctx.db, space, "image", ctx.device, home=ctx.home)
        items = _new_items(args, len(args.files), [str(Path(f).resolve()) for f in args.files])
        raw = projection.encode_images(args.files, progress=True)  # [N, d_img]
        if projection.modality_id is None:
            from unibind.indexer.modalities.registry import get_modality
            from unibind.schema.store_state import lock_catalog

            with ctx.db.transaction() as session:
                lock_catalog(session)
                created = get_modality(session, space, "image") is None
                ensure_image_modality(session, space, projection.encoder)
            projection = load_projection(ctx.db, space, "image", ctx.device, home=ctx.home)
    else:
        if args.modality in ("text", "image"):
            raise ValueError(f"--features is for feature modalities, not {args.modality!r}")
        # a feature modality reaches the space only through its active head, so it is registered already
        projection = load_projection(ctx.db, space, args.modality, ctx.device, home=ctx.home)
        fs = read_features(args.features, dim=projection.input_dim, modality=args.modality)
        if not args.meta and fs.rows is None:
            raise ValueError("--features needs --meta META.jsonl (one line per row: uri, label, other fields)")
        items = _new_items(args, len(fs), None) if args.meta else _rows_as_items(fs.rows or [], args.features, args.label)
        raw = fs.vectors
    try:
        report = add_items(ctx.db, ctx.home, ctx.device, projection, items, raw, factory=args.factory)
    except BaseException:
        if created and projection.modality_id is not None:  # the image modality this add registered goes with it
            from unibind.indexer.modalities.registry import drop_modality_if_unused

            drop_modality_if_unused(ctx.db, projection.modality_id)
        raise
    if args.json:
        emit_json(report.__dict__)
    else:
        print(f"added {report.added} {report.modality} items ({report.via}); the gallery holds {report.total} "
              f"({report.factory}) in {report.seconds:.1f}s")
    return 0


# -- search -------------------------------------------------------------------------------------------
def cmd_search(ctx: Any, args: argparse.Namespace) -> int:
    from unibind.retrieval.search.cross_modal import CrossModalSearch, SearchFilter, parse_where

    space = _space(ctx, args.encoder)
    flt = SearchFilter(label=args.label, where=parse_where(args.where))
    search = CrossModalSearch(ctx.db, ctx.home, ctx.device, space, args.target, nprobe=args.nprobe,
                              ef_search=args.ef_search)
    names, vectors, modality = query_vectors(ctx, space, args)
    results = search.search(vectors, k=args.k, flt=flt)
    if args.json:
        emit_json([{"query": q, "modality": modality, "target": args.target, "hits": [h.__dict__ for h in hits]}
                   for q, hits in zip(names, results)])
        return 0
    for q, hits in zip(names, results):
        print(f"{q}  ({modality} → {args.target})")
        if not hits:
            print("  no results")
            continue
        what = "text" if args.target == "descriptions" else "uri"
        print(format_table(["#", "score", "label", what, "meta"],
                           [[i + 1, h.score, h.label, getattr(h, what), json.dumps(h.meta) if h.meta else ""]
                            for i, h in enumerate(hits)], max_width=80))
        print()
    return 0


def add_commands(sub: Any, common: Callable[[argparse.ArgumentParser], None]) -> None:
    sp = sub.add_parser("modality", help="register a feature modality (name and input dimension), or list them")
    sp.add_argument("action", choices=["add", "list"])
    sp.add_argument("name", nargs="?")
    sp.add_argument("--dim", type=int, help="add: the dimension of the external encoder's vectors")
    sp.add_argument("--source", help="add: which encoder makes them (e.g. 'ImageBind audio')")
    common(sp)
    sp.set_defaults(func=cmd_modality)

    sp = sub.add_parser("heads", help="train, list, show or activate modality heads")
    sp.add_argument("action", choices=["train", "list", "show", "activate"])
    sp.add_argument("--modality", help="the modality (image, audio, ...)")
    sp.add_argument("--version", type=int, help="show/activate: the head version (default for show: the active one)")
    sp.add_argument("--pairs", help="train: JSONL of {\"input\": path-or-row, \"description\": ..., \"label\": ...}")
    sp.add_argument("--features", help="train: the features file (.npy, .pt, .jsonl) whose rows \"input\" names")
    sp.add_argument("--image-encoder", help="train image: the image tower (default: the space's encoder)")
    sp.add_argument("--no-activate", action="store_true", help="train: keep the current active version")
    sp.add_argument("--temperature", type=float, default=0.07, help="InfoNCE temperature (default 0.07)")
    sp.add_argument("--learn-temperature", action="store_true", help="learn the temperature (CLIP's logit scale)")
    sp.add_argument("--symmetric", action="store_true", help="average with the description→sample loss")
    sp.add_argument("--lr", type=float, default=1e-3, help="AdamW learning rate (default 1e-3)")
    sp.add_argument("--weight-decay", type=float, default=0.01, help="AdamW weight decay (default 0.01)")
    sp.add_argument("--batch-size", type=int, default=256, help="pairs per batch (default 256)")
    sp.add_argument("--epochs", type=int, default=100, help="at most this many epochs (default 100)")
    sp.add_argument("--patience", type=int, default=5, help="stop after this many epochs without a better val loss")
    sp.add_argument("--val-fraction", type=float, default=0.1, help="samples held out for validation (default 0.1)")
    sp.add_argument("--seed", type=int, default=0)
    common(sp)
    sp.set_defaults(func=cmd_heads)

    sp = sub.add_parser("gallery", help="add items of any modality, list, remove, verify or rebuild their indexes")
    sp.add_argument("action", choices=["add", "list", "remove", "verify", "rebuild"])
    sp.add_argument("--modality", help="the items' modality")
    sp.add_argument("--files", nargs="+", help="add: image files")
    sp.add_argument("--features", help="add: a features file (.npy, .pt, .jsonl)")
    sp.add_argument("--meta", help="add: JSONL, one line per item: uri, label and any other fields")
    sp.add_argument("--label", help="add: the label of every item added; remove: the items to remove")
    sp.add_argument("--all", action="store_true", help="remove: every item of the modality")
    sp.add_argument("--factory", help="add/rebuild: a FAISS factory string (default: keep the current one; Flat)")
    common(sp)
    sp.set_defaults(func=cmd_gallery)

    sp = sub.add_parser("search", help="cross-modal search: a text, image or feature query against a gallery "
                                       "or the descriptions")
    sp.add_argument("--text", action="append", help="a text query (repeat for a batch)")
    sp.add_argument("--image", action="append", help="an image query (repeat for a batch)")
    sp.add_argument("--features", help="feature queries: every row of the file")
    sp.add_argument("--modality", help="the modality of --features")
    sp.add_argument("--target", required=True, help="a gallery modality (image, audio, ...) or 'descriptions'")
    sp.add_argument("-k", type=int, default=10, help="results per query (default 10)")
    sp.add_argument("--label", help="only items with this label (descriptions: this category)")
    sp.add_argument("--where", action="append", metavar="KEY=VALUE",
                    help="only items whose metadata field KEY equals VALUE (repeat: all must hold)")
    sp.add_argument("--nprobe", type=int, help="IVF indexes: lists probed per query (default 8)")
    sp.add_argument("--ef-search", type=int, help="HNSW indexes: candidate list size (default FAISS's 16)")
    common(sp)
    sp.set_defaults(func=cmd_search)
