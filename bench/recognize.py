"""Recognition throughput: both engines vs. the bare matrix product of the same shapes, side by side.

    .venv/bin/python bench/recognize.py [--shapes C:d:B,...] [--quick] [--k 5] [--top-m 3] [--no-centring] [--repeats N]
                                        [--device auto] [--no-append]

Data: synthetic unit vectors, C categories x K = 50 centre members of dimension d (C in {1000, 21000},
d in {384, 512}). A category's members share a direction: two members of one category have cosine ~``--within``
(default 0.67, what MiniLM gives two descriptions of one builtin class, centred; between classes
it is ~0), and ``--within 0`` draws every member independently (the data of the rows before 2026-12-01).
Queries are members plus as much noise again (cosine ~0.7 to their member, as a real recognition query is
close to one category), batches B in {1, 64, 1024}, k = 5. For each shape, each
repeat times, in this order: the FAISS engine, the bare NumPy float32 product ``[B, d] @ [d, C*K]``, the
dense engine, the bare torch float32 product of the same shapes (on the torch device), and FAISS's own
``index.search`` for the engine's first neighbour count (where the FAISS engine's time goes). The ratio
is engine time ÷ bare product time of the same repeat (FAISS row: NumPy's product, or torch's when FAISS
runs on a GPU; dense row: torch's); medians are reported. With B = 1 the median time is the single-query
p50 latency. Target: batched (B > 1) ratio ≤ 1.5 on CPU. ``--shapes`` keeps the shapes matching any of
its C:d:B filters (``*`` matches anything, e.g. ``1000:*:*``). The rule is the recognizer's default
(the mean of a category's 3 best members, in the space centred on the members' mean direction: the table is
``CentreTable.centred()`` and each call centres its queries); ``--top-m 1 --no-centring`` is the paper's max of
raw cosines. ``--top-m m`` scores a category by the mean
of its m best members; the engine column then reads e.g. ``faiss top-3 centred``
(and the FAISS engine may start deeper than the pigeonhole count the faiss.search column times).
Prints a table and appends one row per engine and shape to BENCHMARKS.md (section "recognize
(bench/recognize.py)") unless --no-append.

Single-query A/B: when B = 1 is measured and the rule is not the paper's, the dense engine (what the default
engine ``auto`` uses for one query) answers 64 other queries with the rule and with the paper's max of raw
cosines, alternately, with no other library's call in between (FAISS's and NumPy's worker threads spinning after
their calls slow the next torch call by up to 3x on 2 cores, which makes the interleaved B = 1 rows above noisy);
the p50 of each and their ratio go to a second table and section ("single-query A/B (bench/recognize.py)").
"""

from __future__ import annotations

import argparse
import itertools
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script: the repo root first

from bench.report import append_rows, command_line, machine, median, now, text_table  # noqa: E402
from unibind.retrieval.recognition.engine import DEFAULT_CENTRING, DEFAULT_TOP_M  # noqa: E402

log = logging.getLogger("bench.recognize")

SECTION = "recognize (bench/recognize.py)"
TARGET_RATIO = 1.5
CATEGORIES, DIMS, BATCHES, MEMBERS = (1000, 21000), (384, 512), (1, 64, 1024), 50
WITHIN = 0.67  # MiniLM, builtin corpus, centred: mean cosine of two descriptions of one class (between: ~0)
QUICK = dict(categories=(300,), dims=(64,), batches=(1, 64, 256), members=20)
BIG_FLOPS = 2e11  # shapes whose product is bigger than this get fewer repeats
COLUMNS = (
    "engine", "C", "K", "d", "B", "repeats", "engine ms", "queries/s", "bare ms", "ratio engine÷bare",
    "faiss.search ms", f"batched ≤ {TARGET_RATIO}",
)
MD_COLUMNS = ("date", "machine", "device", "faiss BLAS", *COLUMNS, "command")
AB_SECTION = "single-query A/B (bench/recognize.py)"
AB_QUERIES = 64
AB_COLUMNS = ("engine", "C", "K", "d", "queries x rounds", "rule p50 ms", "paper's max p50 ms", "ratio rule÷paper")
AB_MD_COLUMNS = ("date", "machine", "device", *AB_COLUMNS, "command")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shapes", default="*:*:*", help="comma-separated C:d:B filters, '*' = any (default: all)")
    p.add_argument("--quick", action="store_true", help="a small smoke run (C=300, K=20, d=64, B up to 256)")
    p.add_argument("--k", type=int, default=5, help="categories per query (default 5)")
    p.add_argument("--top-m", type=int, default=DEFAULT_TOP_M,
                   help=f"score = mean of the m best members (default {DEFAULT_TOP_M}; 1: the paper's max)")
    p.add_argument("--centring", action=argparse.BooleanOptionalAction, default=DEFAULT_CENTRING,
                   help="score in the centred space, as the recognizer does by default (--no-centring: raw cosines)")
    p.add_argument("--repeats", type=int, default=None, help="repeats per shape (default: 7 for B=1, 5 small, 2 big)")
    p.add_argument("--device", default=None, help="auto, cpu, cuda, cuda:N (default $UNIBIND_DEVICE or auto)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--within", type=float, default=WITHIN,
                   help=f"cosine of two members of one category (default {WITHIN}; 0: independent members)")
    p.add_argument("--no-append", action="store_true", help="print only; do not append to BENCHMARKS.md")
    args = p.parse_args(argv)
    filters = []
    for part in (s.strip() for s in args.shapes.split(",") if s.strip()):
        fields = part.split(":")
        if len(fields) != 3 or not all(f == "*" or f.isdigit() for f in fields):
            p.error(f"--shapes: {part!r} is not C:d:B (numbers or '*')")
        filters.append(tuple(None if f == "*" else int(f) for f in fields))
    args.filters = filters
    if args.k < 1 or args.top_m < 1 or (args.repeats is not None and args.repeats < 1):
        p.error("--k, --top-m and --repeats must be >= 1")
    if not 0 <= args.within < 1:
        p.error(f"--within must be in [0, 1), got {args.within}")
    return args


def wanted(filters: list[tuple[int | None, ...]], shape: tuple[int, int, int]) -> bool:
    return any(all(f is None or f == v for f, v in zip(flt, shape)) for flt in filters)


def unit(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    x = rng.standard_normal((n, d), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def category_members(rng: np.random.Generator, C: int, K: int, d: int, within: float) -> np.ndarray:
    """[C*K, d] unit members, category c owning rows c*K .. c*K+K-1: sqrt(within) of a direction of the category
    plus sqrt(1 - within) of a member's own, so two members of a category have cosine ~within."""
    if within <= 0:
        return unit(rng, C * K, d)
    shared = np.repeat(unit(rng, C, d), K, axis=0)  # [C*K, d]
    x = np.sqrt(within, dtype=np.float32) * shared + np.sqrt(1 - within, dtype=np.float32) * unit(rng, C * K, d)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def faiss_blas() -> str:
    """FAISS's BLAS and the kernel it picked, and its BLAS threshold: both decide FAISS's flat search speed
    (its bundled OpenBLAS 0.3.15 falls back to 'Prescott' kernels on CPUs it does not know; batches with
    nq * d < distance_compute_blas_threshold skip BLAS)."""
    from unibind.indexer.runtime.faiss_lib import faiss

    core = "?"
    try:
        from threadpoolctl import threadpool_info

        for info in threadpool_info():
            if "faiss" in info.get("filepath", "") and info.get("internal_api") in ("openblas", "mkl", "blis"):
                core = f"{info['internal_api']} {info.get('version')} {info.get('architecture') or ''}".strip()
    except ImportError:
        pass
    return f"{core}, blas_threshold {faiss.cvar.distance_compute_blas_threshold}"


def timed(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)
    args = parse_args(argv)

    import torch

    from unibind.indexer.runtime.device import select_device
    from unibind.indexer.runtime.vectors import normalize
    from unibind.retrieval.recognition.engines import make_engine
    from unibind.retrieval.recognition.engine import CentreTable
    from unibind.schema.settings import Settings

    device = select_device(Settings.resolve(device=args.device).device)  # --device, else $UNIBIND_DEVICE, else auto
    sync = torch.cuda.synchronize if device.is_cuda else (lambda: None)
    cfg = QUICK if args.quick else dict(categories=CATEGORIES, dims=DIMS, batches=BATCHES, members=MEMBERS)
    K = cfg["members"]
    host, blas = machine(), faiss_blas()
    log.info("machine: %s; device: %s; torch threads: %d; faiss BLAS: %s", host, device.describe(),
             torch.get_num_threads(), blas)
    rows: list[list[object]] = []
    ab_rows: list[list[object]] = []
    rng = np.random.default_rng(args.seed)
    for C, d in itertools.product(cfg["categories"], cfg["dims"]):
        batches = [B for B in cfg["batches"] if wanted(args.filters, (C, d, B))]
        if not batches:
            continue
        t = time.perf_counter()
        members = category_members(rng, C, K, d, args.within)  # [C*K, d], category c owns rows c*K .. c*K+K-1
        raw = CentreTable([f"category {c}" for c in range(C)], members, np.repeat(np.arange(C, dtype=np.int64), K))
        table = raw.centred() if args.centring else raw
        engines = {name: make_engine(name, table, device, top_m=args.top_m) for name in ("faiss", "dense")}
        z_torch = torch.as_tensor(members).to(device.torch)  # [C*K, d], for the bare torch product
        log.info("C=%d K=%d d=%d: data and engines built in %.1fs", C, K, d, time.perf_counter() - t)
        fetch = min(C * K, (min(args.k, C) - 1) * K + 1)  # the FAISS engine's first neighbour count
        for B in batches:
            picks = rng.integers(0, C * K, size=B)
            queries = normalize(members[picks] + unit(rng, B, d))  # [B, d], cosine ~0.7 to one member
            q_torch = torch.as_tensor(queries).to(device.torch)
            flops = 2.0 * B * C * K * d
            repeats = args.repeats or (7 if B == 1 else 5 if flops < BIG_FLOPS else 2)
            calls: dict[str, Callable[[], object]] = {
                "faiss": lambda: engines["faiss"].recognize(queries, args.k),
                "numpy": lambda: queries @ members.T,  # [B, C*K]
                "dense": lambda: engines["dense"].recognize(queries, args.k),
                "torch": lambda: (q_torch @ z_torch.T, sync()),  # [B, C*K]
                "search": lambda: engines["faiss"].store.search(queries, fetch),
            }
            if flops < BIG_FLOPS:  # warm-up (lazy allocations, thread pools); big shapes warm up in repeat 1
                for fn in calls.values():
                    fn()
            times: dict[str, list[float]] = {name: [] for name in calls}
            for rep in range(repeats):
                for name, fn in calls.items():
                    times[name].append(timed(fn))
                log.info("C=%d d=%d B=%d repeat %d/%d: %s", C, d, B, rep + 1, repeats,
                         ", ".join(f"{n} {v[-1] * 1e3:.1f}ms" for n, v in times.items()))
            bare_of = {"faiss": "torch" if device.faiss_gpu is not None else "numpy", "dense": "torch"}
            for engine in ("faiss", "dense"):
                ratio = median([e / b for e, b in zip(times[engine], times[bare_of[engine]])])
                ms = median(times[engine]) * 1e3
                label = engine if args.top_m == 1 else f"{engine} top-{args.top_m}"
                label += " centred" if args.centring else ""
                label += f", members within {args.within:g}" if args.within > 0 else ""
                rows.append([
                    label, C, K, d, B, repeats, ms, B / ms * 1e3, median(times[bare_of[engine]]) * 1e3, ratio,
                    median(times["search"]) * 1e3 if engine == "faiss" else "",
                    ("yes" if ratio <= TARGET_RATIO else "no") if B > 1 else "n/a (p50 latency)",
                ])
        if 1 in batches and (args.top_m != 1 or args.centring):
            ab_rows.append(single_query_ab(rng, engines["dense"], make_engine("dense", raw, device, top_m=1),
                                           members, args.k, rounds=3 if C * K * d < 1e8 else 1))
        del engines, table, raw, members, z_torch

    date = now()
    print(f"\nrecognize benchmark, {date}, {host}, {device.describe()}, faiss BLAS: {blas}, k={args.k}, "
          f"top_m={args.top_m}, centring={args.centring}; engine ms at B=1 is the single-query p50 latency")
    print(text_table(COLUMNS, rows))
    cmd = f"`{command_line('bench/recognize.py')}`"
    if rows and not args.no_append:
        append_rows(SECTION, MD_COLUMNS, [[date, host, device.describe(), blas, *(
            round(v, 3) if isinstance(v, float) else v for v in row), cmd] for row in rows])
    if ab_rows:
        print(f"\nsingle-query A/B, {date}: dense engine, the rule (top_m={args.top_m}, centring={args.centring}) vs "
              "the paper's max of raw cosines, alternately on the same queries")
        print(text_table(AB_COLUMNS, ab_rows))
        if not args.no_append:
            append_rows(AB_SECTION, AB_MD_COLUMNS, [[date, host, device.describe(), *(
                round(v, 3) if isinstance(v, float) else v for v in row), cmd] for row in ab_rows])
    return 0


def single_query_ab(rng: np.random.Generator, rule, paper, members: np.ndarray, k: int, rounds: int) -> list[object]:  # type: ignore[no-untyped-def]
    """p50 latency of one query with ``rule`` and with ``paper`` (both dense engines on the same members),
    called alternately on AB_QUERIES queries, ``rounds`` times, nothing else in between."""
    from unibind.indexer.runtime.vectors import normalize

    M, d = members.shape
    queries = normalize(members[rng.integers(0, M, size=AB_QUERIES)] + unit(rng, AB_QUERIES, d))
    rule.recognize(queries[0], k), paper.recognize(queries[0], k)  # warm-up
    times: dict[str, list[float]] = {"rule": [], "paper": []}
    for _ in range(rounds):
        for q in queries:
            times["rule"].append(timed(lambda: rule.recognize(q, k)))  # noqa: B023 (called at once)
            times["paper"].append(timed(lambda: paper.recognize(q, k)))  # noqa: B023
    rule_ms, paper_ms = median(times["rule"]) * 1e3, median(times["paper"]) * 1e3
    log.info("C=%d d=%d single-query A/B: rule %.2f ms, paper's max %.2f ms (p50)", rule.table.n_categories, d,
             rule_ms, paper_ms)
    return [f"dense top-{rule.top_m}" + (" centred" if rule.table.mean is not None else ""), rule.table.n_categories,
            rule.table.k_max, d, f"{AB_QUERIES} x {rounds}", rule_ms, paper_ms, rule_ms / paper_ms]


if __name__ == "__main__":
    sys.exit(main())
