"""``unibind eval zero-shot``: the paper's comparison on a labelled dataset, one table (or CLIP_benchmark's JSON)."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

from unibind.retrieval.cli.context import Context
from unibind.retrieval.cli.output import emit_json, format_table
from unibind.retrieval.cli.parser import add_leaf, common
from unibind.schema.errors import InvalidInput

TASK = "zeroshot_classification"


def _model_fields(encoder: str) -> tuple[str, str]:
    """CLIP_benchmark's (model, pretrained) of an encoder spec: open_clip:ARCH/TAG → (ARCH, TAG); else (spec, "")."""
    from unibind.indexer.encoders.spec import parse_encoder_spec

    spec = parse_encoder_spec(encoder)
    if spec.kind == "open_clip":
        return spec.name or encoder, spec.pretrained or str(spec.checkpoint or "")
    return encoder, ""


def _pct(value: float, ci: tuple[float, float], signed: bool = False) -> str:
    return f"{value * 100:{'+' if signed else ''}.2f} [{ci[0] * 100:{'+' if signed else ''}.2f}, " \
           f"{ci[1] * 100:{'+' if signed else ''}.2f}]"


def records(rows: list[Any], *, dataset: str, encoder: str, queries: int, classes: int, uncovered: list[str],
            corpora: list[str] | None, skipped: int, modality: str) -> list[dict[str, Any]]:
    """One record per classifier in CLIP_benchmark's result layout (dataset, model, pretrained, task, metrics,
    language), with unibind's fields after them."""
    model, pretrained = _model_fields(encoder)
    out = []
    for r in rows:
        s = r.scored
        out.append({
            "dataset": dataset, "model": model, "pretrained": pretrained, "task": TASK, "metrics": s.metrics,
            "language": "en", "classifier": r.classifier.name, "default": r.classifier.name == "default",
            "description": r.classifier.what, "encoder": encoder, "modality": modality,
            "intervals": {m: list(ci) for m, ci in s.intervals.items()},
            "difference_to_prompt": None if s.difference is None else {
                **s.difference, **{f"{m}_ci": list(ci) for m, ci in (s.difference_intervals or {}).items()}},
            "queries": queries, "categories": classes, "skipped": skipped, "corpora": corpora,
            "uncovered": uncovered, "uncovered_scored_by": "prompt",
        })
    return out


def _print_table(rows: list[Any], *, dataset: str, n: int, classes: int, uncovered: list[str], skipped: int,
                 cached: bool) -> None:
    headers = ["classifier", "top-1 %", "top-5 %", "mean per-class recall %", "top-1 vs prompt"]
    table = []
    for r in rows:
        s = r.scored
        diff = "-" if s.difference is None else _pct(s.difference["acc1"], s.difference_intervals["acc1"], signed=True)
        name = f"{r.classifier.name} (default)" if r.classifier.name == "default" else r.classifier.name
        table.append([name, _pct(s.metrics["acc1"], s.intervals["acc1"]), _pct(s.metrics["acc5"], s.intervals["acc5"]),
                      _pct(s.metrics["mean_per_class_recall"], s.intervals["mean_per_class_recall"]), diff])
    print(format_table(headers, table))
    from unibind.retrieval.evaluation.intervals import LEVEL, RESAMPLES

    print(f"{dataset}: {n:,} samples, {classes} classes{f', {skipped} bad samples skipped' if skipped else ''}"
          f"{' (query encodings from the cache)' if cached else ''}")
    if uncovered:
        print(f"{len(uncovered)} of {classes} classes have no descriptions and are scored by the base prompt in every "
              f"classifier: {', '.join(uncovered)}")
    else:
        print("every class has descriptions in the knowledge base")
    print(f"[lower, upper]: bootstrap {LEVEL * 100:.0f} % interval over the samples ({RESAMPLES:,} resamples, seeded); "
          "vs prompt: the paired difference in top-1")


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "x"


def _write_results(folder: Path, recs: list[dict[str, Any]]) -> None:
    """One CLIP_benchmark result file per classifier (``clip_benchmark build FOLDER/*.json`` tabulates them)."""
    folder.mkdir(parents=True, exist_ok=True)
    for rec in recs:
        name = f"{_slug(rec['dataset'])}_{_slug(rec['model'])}_{_slug(rec['classifier'])}.json"
        (folder / name).write_text(json.dumps(rec, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _encoder_for(ctx: Context, space: Any, kind: str, modality: str | None) -> tuple[str, Any, str]:
    """(modality, batch → vectors of the space, the key of the encodings' cache)."""
    from unibind.indexer.encoders.factory import build_encoder
    from unibind.indexer.modalities.projection import load_projection

    name = modality or kind
    if kind == "features" and name in ("text", "image", "features"):
        raise InvalidInput("a features dataset needs --modality NAME (the feature modality whose head projects it)")
    if kind != "features" and name != kind:
        raise InvalidInput(f"--modality {name} does not go with a dataset of {kind} samples")
    encoder = build_encoder(space.encoder, ctx.device)
    if name == "text":
        return name, (encoder, encoder.encode_text), f"{space.encoder}\0text"
    projection = load_projection(ctx.db, space, name, ctx.device, home=ctx.home, text_encoder=encoder)
    key = f"{space.encoder}\0{name}\0{projection.head_id}\0{projection.head_version}"
    if name == "image":
        return name, (encoder, lambda batch: projection.images(batch)), key
    return name, (encoder, lambda batch: projection.features(batch, name)), key


def cmd_zero_shot(ctx: Context, args: argparse.Namespace) -> int:
    from unibind.retrieval.evaluation.datasets import BadSamples, DatasetOptions, open_dataset
    from unibind.retrieval.evaluation.classifiers import parse_classifiers
    from unibind.retrieval.evaluation.zero_shot import cache_path, compare, coverage, encode_dataset

    classifiers = parse_classifiers(args.classifiers)
    if args.batch_size < 1:
        raise InvalidInput(f"--batch-size must be >= 1, got {args.batch_size}")
    corpora = tuple(c.strip() for c in args.corpus.split(",") if c.strip()) if args.corpus else None
    dataset = open_dataset(args.dataset, DatasetOptions(class_names=args.class_names, labels=args.labels,
                                                        features=args.features, dataset_root=args.dataset_root,
                                                        split=args.split))
    space = ctx.space()
    cover = coverage(ctx.db, space, dataset.classes, corpora)
    if cover.uncovered and args.require_kb:
        raise InvalidInput(f"{len(cover.uncovered)} of {len(dataset.classes)} classes have no descriptions in the "
                           f"{'corpora ' + ','.join(corpora) if corpora else 'knowledge base'}: "
                           f"{', '.join(cover.uncovered)} (without --require-kb they are scored by the base prompt)")
    modality, (encoder, encode), key = _encoder_for(ctx, space, dataset.kind, args.modality)
    cache = None if args.no_cache else cache_path(ctx.home, key, dataset, args.skip_bad)
    queries = encode_dataset(dataset, encode, bad=BadSamples(skip=args.skip_bad), batch_size=args.batch_size,
                             cache=cache)
    rows = compare(ctx.db, ctx.device, space, encoder, cover, queries, classifiers, corpora=corpora)
    recs = records(rows, dataset=dataset.name, encoder=space.encoder, queries=len(queries.labels),
                   classes=len(dataset.classes), uncovered=cover.uncovered, corpora=list(corpora) if corpora else None,
                   skipped=queries.skipped, modality=modality)
    if args.out_dir:
        _write_results(Path(args.out_dir), recs)
    if args.json:
        emit_json(recs)
    else:
        _print_table(rows, dataset=dataset.name, n=len(queries.labels), classes=len(dataset.classes),
                     uncovered=cover.uncovered, skipped=queries.skipped, cached=queries.cached)
    return 0


def add_command(group: Any) -> None:
    """``zero-shot`` under ``unibind eval``."""
    from unibind.retrieval.evaluation.datasets import SPEC_HELP
    from unibind.retrieval.evaluation.classifiers import CLASSIFIERS

    every = ",".join(CLASSIFIERS)
    sp = add_leaf(group, "zero-shot", "the paper's comparison on a labelled dataset: prompt, templates, CuPL, the "
                  "paper's rule and the default rule, with intervals", cmd_zero_shot, [
                      "unibind eval zero-shot --dataset imagefolder:imagenet/val --encoder open_clip:ViT-B-32/openai",
                      "unibind eval zero-shot --dataset jsonl:queries.jsonl --classifiers prompt,cupl,default --json",
                      "unibind eval zero-shot --dataset webdataset:'shards/{000000..000006}.tar' --out-dir results",
                      "unibind eval zero-shot --dataset features:clips.npy --labels clips.txt --modality audio",
                      "unibind eval zero-shot --dataset clip_benchmark:cifar10 --dataset-root ~/data/cifar10",
                  ])
    sp.add_argument("--dataset", required=True, metavar="SPEC", help=SPEC_HELP)
    sp.add_argument("--class-names", metavar="FILE", help="class names by index: one per line (line 1 = class 0) "
                    "or a JSON list (default: the folder names, the labels, or the shards' classnames.txt)")
    sp.add_argument("--labels", metavar="FILE", help="features:FILE.npy: one label per row")
    sp.add_argument("--features", metavar="FILE.npy", help="csv/jsonl with a 'row' field: the rows it indexes")
    sp.add_argument("--dataset-root", metavar="DIR", help="clip_benchmark:NAME: where the dataset is")
    sp.add_argument("--split", default="test", help="clip_benchmark:NAME: the split (default test)")
    sp.add_argument("--modality", help="the samples' modality: text, image (the defaults by dataset) or a feature "
                                       "modality with an active head")
    sp.add_argument("--corpus", help="describe classes from these corpora only (comma-separated; default all)")
    sp.add_argument("--classifiers", default=every, help=f"comma-separated (default {every})")
    sp.add_argument("--require-kb", action="store_true",
                    help="refuse when a class has no descriptions (default: it is scored by the base prompt)")
    sp.add_argument("--skip-bad", action="store_true", help="count and skip bad samples instead of stopping")
    sp.add_argument("--batch-size", type=int, default=256, help="samples encoded at a time (default 256)")
    sp.add_argument("--no-cache", action="store_true", help="encode the samples again instead of reading the "
                                                            "cached encodings (kept under $UNIBIND_HOME/eval-cache)")
    sp.add_argument("--out-dir", metavar="DIR", help="also write one CLIP_benchmark result JSON per classifier there")
    common(sp)
