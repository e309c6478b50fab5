"""``unibind index verify|rebuild|compact``: the description indexes against the store, their repair, and the
merging of their segments."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from unibind.retrieval.cli.context import Context
from unibind.retrieval.cli.output import emit_json
from unibind.retrieval.cli.parser import add_group, add_leaf, common
from unibind.schema.errors import Conflict


def segments(n: int) -> str:
    return f"{n} segment" if n == 1 else f"{n} segments"


def _spaces(ctx: Context) -> list[Any]:
    from sqlalchemy import select

    from unibind.indexer.store.contents import find_space
    from unibind.schema import Space

    with ctx.db.session() as session:
        spaces = [find_space(session, ctx.encoder)] if ctx.encoder else list(session.scalars(select(Space).order_by(Space.id)))
    if not spaces:
        raise Conflict("the knowledge base is empty: nothing to verify, compact or rebuild")  # as find_space: the store's state
    return spaces


def cmd_verify(ctx: Context, args: argparse.Namespace) -> int:
    from unibind.indexer.store.contents import description_index

    results, failed = [], False
    for space in _spaces(ctx):
        check = description_index(ctx.db, space, ctx.home, ctx.device).verify()
        failed |= not check.ok
        results.append({"space": space.encoder, "path": str(check.path) if check.path else None,
                        "location": check.location, "segments": check.segments, "ok": check.ok,
                        "store": check.n_store, "file": check.n_file, "problems": check.problems,
                        "unused_files": check.orphans})
    if args.json:
        emit_json(results)
    else:
        for r in results:
            state = "ok" if r["ok"] else "STALE"
            print(f"{state}  {r['space']}: {r['file']} vectors in {segments(r['segments'])} ({r['location']}), "
                  f"{r['store']} descriptions in the store")
            for p in r["problems"]:
                print(f"      - {p}")
            if r["unused_files"]:
                print(f"      {len(r['unused_files'])} unused index versions (removed by the next write or index rebuild)")
        if failed:
            print("run `unibind index rebuild` to rebuild from the stored vectors", file=sys.stderr)
    return 1 if failed else 0


def cmd_rebuild(ctx: Context, args: argparse.Namespace) -> int:
    from unibind.indexer.index.data_home import DataHome
    from unibind.indexer.modalities.versions import collect_head_files
    from unibind.indexer.store.centre_keys import prune_centres
    from unibind.indexer.store.contents import description_index
    from unibind.indexer.store.removal import reap_abandoned
    from unibind.indexer.store.vacuum import vacuum
    from unibind.schema.store_state import lock_catalog

    spaces = _spaces(ctx)
    # dead rows first: ingests whose process died, then centres and files nothing names
    purged = reap_abandoned(ctx.db)
    heads_removed = collect_head_files(ctx.db, DataHome(ctx.db, ctx.home))
    results = []
    for space in spaces:
        index = description_index(ctx.db, space, ctx.home, ctx.device)
        with ctx.db.transaction() as session:
            lock_catalog(session)  # unreachable centres serve no query: nothing visible changes
            centres = prune_centres(session, space.id)
        index.rebuild(args.factory, progress=True)
        with ctx.db.session() as session:
            n, factory = index.store_count(session), index.factory(session)
        results.append({"space": space.encoder, "path": index.location, "vectors": n,
                        "factory": factory, "purged_incomplete": purged, "dead_centres": centres,
                        "unused_head_files": heads_removed})
        purged, heads_removed = [], []
    report = vacuum(ctx.db, ctx.home, ctx.device)  # what the old segments and killed writes left
    if args.json:
        emit_json(results)
    else:
        for r in results:
            extra = f"; removed interrupted ingests {', '.join(r['purged_incomplete'])}" if r["purged_incomplete"] else ""
            extra += f"; removed {r['dead_centres']} dead centres" if r["dead_centres"] else ""
            extra += f"; removed {len(r['unused_head_files'])} unused head files" if r["unused_head_files"] else ""
            print(f"rebuilt {r['path']}: {r['vectors']} vectors ({r['factory']}){extra}")
        if report.payloads:
            print(f"removed {len(report.payloads)} unused index files or collections")
    return 0


def cmd_compact(ctx: Context, args: argparse.Namespace) -> int:
    from unibind.indexer.index.compaction import compact
    from unibind.indexer.store.vacuum import indexes_of, vacuum

    spaces = {s.id for s in _spaces(ctx)}
    results = []
    for index in indexes_of(ctx.db, ctx.home, ctx.device):
        if index.space_id not in spaces:
            continue
        with ctx.db.session() as session:
            before = len(index.segments(session))
        merges = compact(index, full=args.full)
        with ctx.db.session() as session:
            after = len(index.segments(session))
        results.append({"index": index.kind_name, "segments_before": before, "segments_after": after,
                        "merges": len(merges), "rows_rewritten": sum(m.rows for m in merges),
                        "tombstones_folded": sum(m.folded for m in merges)})
    report = vacuum(ctx.db, ctx.home, ctx.device)
    if args.json:
        emit_json({"indexes": results, "vacuum": {"horizon": report.horizon, "segments": report.segments,
                                                  "corpora": report.corpora, "items": report.items,
                                                  "unused_payloads": len(report.payloads)}})
    else:
        for r in results:
            print(f"{r['index']}: {r['segments_before']} -> {segments(r['segments_after'])} ({r['merges']} merges, "
                  f"{r['rows_rewritten']} rows rewritten, {r['tombstones_folded']} tombstones folded)")
        print(f"vacuum: removed {report.segments} old segments, {report.corpora} deleted corpora and {report.items} "
              "removed items that no reader can see any more")
    return 0


def add_commands(sub: Any) -> None:
    group = add_group(sub, "index", "verify the description indexes (FAISS files or Milvus collections) against the "
                                    "store, or rebuild them from stored vectors")
    sp = add_leaf(group, "verify", "does each description index hold exactly what the store says? (exit 1 when not)",
                  cmd_verify, ["unibind index verify", "unibind index verify --encoder minilm --json"])
    common(sp, "only this encoder's space (default: $UNIBIND_ENCODER; every space)")
    sp = add_leaf(group, "compact", "merge the segments of every index as the compaction policy asks (or into one with "
                                    "--full) and remove what no reader can see any more", cmd_compact,
                  ["unibind index compact", "unibind index compact --full"])
    sp.add_argument("--full", action="store_true", help="merge each index into one segment")
    common(sp, "only this encoder's space (default: $UNIBIND_ENCODER; every space)")
    sp = add_leaf(group, "rebuild", "rebuild the description indexes from the stored vectors (no re-encoding) and "
                                    "remove what killed processes left", cmd_rebuild,
                  ["unibind index rebuild", "unibind index rebuild --factory HNSW32",
                   "unibind --vectors milvus://127.0.0.1:19530 index rebuild"])
    sp.add_argument("--factory", help="a FAISS factory string, or with --vectors milvus… a Milvus index type: FLAT, "
                                      "IVF_FLAT, IVF_SQ8, HNSW (default: the current one)")
    common(sp, "only this encoder's space (default: $UNIBIND_ENCODER; every space)")
