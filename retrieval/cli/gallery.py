"""``unibind gallery add|list|remove|verify|rebuild``: items of any modality, searchable across modalities."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from unibind.retrieval.cli.context import Context
from unibind.retrieval.cli.output import emit_json, format_table
from unibind.retrieval.cli.parser import add_group, add_leaf, common, exclusive
from unibind.retrieval.cli.ray_options import add_ray_options, on_ray, ray_config
from unibind.schema.errors import InvalidInput

RAY_IMAGE_BATCH = 64  # images per actor call under --ray (the local image batch)


def _new_items(args: argparse.Namespace, n: int, uris: list[str] | None) -> list[Any]:
    from unibind.indexer.gallery.items import NewItem
    from unibind.indexer.readers.pairs import read_meta

    if args.meta:
        metas = read_meta(args.meta, n)
        return [NewItem(uri=m.uri or (uris[i] if uris else None), label=m.label or args.label, meta=m.meta or None)
                for i, m in enumerate(metas)]
    return [NewItem(uri=uris[i] if uris else None, label=args.label) for i in range(n)]


def _rows_as_items(rows: list[dict[str, Any]], source: str, label: str | None) -> list[Any]:
    """Items from the other fields of a features JSONL's rows (uri and label taken out, the rest is metadata)."""
    from unibind.indexer.gallery.items import NewItem
    from unibind.indexer.readers.pairs import item_meta

    metas = [item_meta(r, f"{source}: row {i}", i) for i, r in enumerate(rows)]
    return [NewItem(uri=m.uri, label=m.label or label, meta=m.meta or None) for m in metas]


def _modalities(ctx: Context, space: Any, name: str | None) -> list[Any]:
    """--modality's modality, or every modality of the space (each with its space loaded)."""
    from unibind.indexer.modalities.registry import find_modality, list_modalities

    with ctx.db.session() as session:
        mods = [find_modality(session, space, name)] if name else list_modalities(session, space)
        for m in mods:
            _ = m.space
    return mods


def cmd_list(ctx: Context, args: argparse.Namespace) -> int:
    from unibind.indexer.gallery.items import summarize

    from unibind.indexer.modalities.registry import find_modality, list_modalities

    space = ctx.space()
    with ctx.db.session() as session:
        mods = [find_modality(session, space, args.modality)] if args.modality else list_modalities(session, space)
        rows = [s.__dict__ for s in summarize(session, mods)]
    if args.json:
        emit_json(rows)
    elif not rows:
        print("no gallery yet: unibind gallery add --modality M (--files ... | --features FILE --meta META.jsonl)")
    else:
        print(format_table(list(rows[0]), [list(r.values()) for r in rows]))
    return 0


def cmd_remove(ctx: Context, args: argparse.Namespace) -> int:
    from unibind.indexer.gallery.items import remove_items, require_label

    mods = _modalities(ctx, ctx.space(), args.modality)
    if not args.all:  # a label no item has removes nothing: say so, as search and recognize do
        with ctx.db.session() as session:
            require_label(session, mods[0], args.label)
    n = remove_items(ctx.db, ctx.home, ctx.device, mods[0], None if args.all else args.label)
    emit_json({"removed": n}) if args.json else print(f"removed {n} {args.modality} items")
    return 0


def cmd_verify(ctx: Context, args: argparse.Namespace) -> int:
    from unibind.indexer.gallery.items import gallery_index
    from unibind.retrieval.cli.index import segments

    results, failed = [], False
    for m in _modalities(ctx, ctx.space(), args.modality):
        check = gallery_index(ctx.db, ctx.home, ctx.device, m).verify()
        failed |= not check.ok
        results.append({"modality": m.name, "ok": check.ok, "items": check.n_store, "file": check.n_file,
                        "segments": check.segments, "location": check.location, "problems": check.problems})
    if args.json:
        emit_json(results)
    else:
        for r in results:
            print(f"{'ok' if r['ok'] else 'STALE'}  {r['modality']}: {r['file']} vectors in "
                  f"{segments(r['segments'])} ({r['location']}), {r['items']} items")
            for p in r["problems"]:
                print(f"      - {p}")
    return 1 if failed else 0


def cmd_rebuild(ctx: Context, args: argparse.Namespace) -> int:
    from unibind.indexer.gallery.items import gallery_index, reproject

    results = []
    for m in _modalities(ctx, ctx.space(), args.modality):
        index = gallery_index(ctx.db, ctx.home, ctx.device, m)
        # from the stored encoder outputs, through the active head: vectors and index agree again
        n = reproject(ctx.db, ctx.home, ctx.device, m.id, factory=args.factory)
        with ctx.db.session() as session:
            factory = index.factory(session)
        results.append({"modality": m.name, "path": index.location, "vectors": n, "factory": factory})
    if args.json:
        emit_json(results)
    else:
        for r in results:
            print(f"rebuilt {r['path']}: {r['vectors']} vectors ({r['factory']})")
    return 0


def cmd_add(ctx: Context, args: argparse.Namespace) -> int:
    from unibind.indexer.gallery.items import add_items
    from unibind.indexer.modalities.projection import ensure_image_modality, load_projection
    from unibind.indexer.readers.features import read_features

    if args.features and args.ray is not None:
        raise InvalidInput("--ray encodes image files (--files); a features file holds vectors already, so there is "
                           "nothing to encode on Ray")
    ray = ray_config(args, batch_size=RAY_IMAGE_BATCH)
    space = ctx.space()
    if args.factory:  # before any image is encoded
        from unibind.indexer.index.data_home import DataHome
        from unibind.indexer.index.places import check_factory

        check_factory(DataHome(ctx.db, ctx.home), ctx.db.vectors, space.dim, args.factory)
    if args.label is not None and not (0 < len(args.label.strip()) <= 500):
        raise InvalidInput("--label must be a non-empty string of at most 500 characters")
    created = False
    if args.files:
        if args.modality != "image":
            raise InvalidInput(f"--files adds images; modality {args.modality!r} takes --features FILE --meta META.jsonl")
        for f in args.files:
            if not Path(f).is_file():
                raise FileNotFoundError(f"image file not found: {f}")
        projection = load_projection(ctx.db, space, "image", ctx.device, home=ctx.home)
        if projection.modality_id is not None:  # a gallery recorded under the other --vectors: refused before encoding
            from unibind.indexer.gallery.items import gallery_index
            from unibind.schema import Modality

            with ctx.db.session() as session:
                modality = session.get(Modality, projection.modality_id)
                assert modality is not None
                _ = modality.space
            gallery_index(ctx.db, ctx.home, ctx.device, modality).check_place()
        items = _new_items(args, len(args.files), [str(Path(f).resolve()) for f in args.files])
        if ray is not None and projection.encoder is not None:  # only encoding runs on Ray; this process writes
            raw = on_ray(projection.encoder, ray).encode_images(args.files)
        else:
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
            raise InvalidInput(f"--features is for feature modalities, not {args.modality!r}")
        # a feature modality reaches the space only through its active head, so it is registered already
        projection = load_projection(ctx.db, space, args.modality, ctx.device, home=ctx.home)
        fs = read_features(args.features, dim=projection.input_dim, modality=args.modality)
        if not args.meta and fs.rows is None:
            raise InvalidInput("--features needs --meta META.jsonl (one line per row: uri, label, other fields)")
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


def add_commands(sub: Any) -> None:
    group = add_group(sub, "gallery", "add items of any modality, list, remove, verify or rebuild their indexes")
    sp = add_leaf(group, "add", "add items: image files, or the rows of a features file with their metadata", cmd_add, [
        "unibind gallery add --modality image --files photos/cat1.jpg photos/cat2.jpg --label cat",
        "unibind gallery add --modality audio --features clips.npy --meta clips.jsonl",
        "unibind gallery add --modality image --files photos/cat1.jpg photos/cat2.jpg --label cat --ray",
        "unibind gallery add --modality audio --features clips.jsonl",
    ])
    sp.add_argument("--modality", required=True, help="the items' modality")
    what = exclusive(sp, "gallery add needs either --files (images) or --features FILE, not both")
    what.add_argument("--files", nargs="+", help="image files")
    what.add_argument("--features", help="a features file (.npy, .pt, .jsonl)")
    sp.add_argument("--meta", help="JSONL, one line per item: uri, label and any other fields")
    sp.add_argument("--label", help="the label of every item added")
    sp.add_argument("--factory", help="a FAISS factory string, or with --vectors milvus… a Milvus index type "
                                      "(default: keep the current one; Flat / FLAT)")
    add_ray_options(sp, "the image files")
    common(sp)

    sp = add_leaf(group, "list", "items per modality, with the index type", cmd_list,
                  ["unibind gallery list", "unibind gallery list --modality audio --json"])
    sp.add_argument("--modality", help="only this modality")
    common(sp)

    sp = add_leaf(group, "remove", "remove a modality's items with a label, or all of them", cmd_remove,
                  ["unibind gallery remove --modality audio --label dog", "unibind gallery remove --modality audio --all"])
    sp.add_argument("--modality", required=True, help="the items' modality")
    which = exclusive(sp, "gallery remove needs --label L or --all")
    which.add_argument("--label", help="the items to remove")
    which.add_argument("--all", action="store_true", help="every item of the modality")
    common(sp)

    sp = add_leaf(group, "verify", "does each gallery index hold exactly the stored items? (exit 1 when not)",
                  cmd_verify, ["unibind gallery verify", "unibind gallery verify --modality audio --json"])
    sp.add_argument("--modality", help="only this modality")
    common(sp)

    sp = add_leaf(group, "rebuild", "re-project the stored encoder outputs through the active head and rebuild the "
                                    "index", cmd_rebuild,
                  ["unibind gallery rebuild", "unibind gallery rebuild --modality image --factory HNSW32"])
    sp.add_argument("--modality", help="only this modality")
    sp.add_argument("--factory", help="a FAISS factory string, or with --vectors milvus… a Milvus index type "
                                      "(default: keep the current one; Flat / FLAT)")
    common(sp)
