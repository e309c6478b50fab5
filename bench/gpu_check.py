"""GPU readiness: the dense engine and the head training on the device vs the bare torch product and the CPU,
with exactness against the CPU engine and a float64 NumPy brute force. Needs only torch and numpy.

    python bench/gpu_check.py [--device cuda] [--quick] [--append] [--from-tree]

Runs from a copy of the repository without an installed ``unibind``: when ``unibind`` is not importable
(or with ``--from-tree``), a temporary folder holding ``unibind/`` with symlinks to the repository's
``schema``, ``indexer``, ``retrieval`` and ``migrations`` goes first on sys.path (a namespace package, no
install). Neither faiss nor SQLAlchemy is imported; the last lines say so.

The rule is the recognizer's default (the mean of a category's 3 best members, in the space centred on the
members' mean direction); ``--paper-rule`` checks the paper's max of raw cosines instead.

(a) recognition: ``DenseEngine.recognize`` vs the bare ``q @ members.T`` of the same shapes (default
    C = 21,000 categories x K = 50 members, d = 512, B in 1, 64, 1024, 4096; ``--quick``: C = 300, K = 20,
    d = 64, B in 1, 64), medians over repeats with CUDA synchronisation, ratio engine ÷ bare;
(b) exactness: the device engine's top-k labels and scores (for the first ``--exact-queries`` queries of
    the largest batch) equal the CPU dense engine's (bitwise) and a float64 NumPy brute force (the rule from
    its definition, top-k; scores within 1e-9); any mismatch makes the exit status 1;
(c) head training: a short InfoNCE training (``unibind.indexer.training.infonce.train_head``) on
    synthetic pairs, seconds per epoch on the device vs the CPU.

Prints a table; with ``--append`` appends dated rows to BENCHMARKS.md (section "gpu check
(bench/gpu_check.py)") with bench/report.py's helper.
"""

from __future__ import annotations

import argparse
import atexit
import importlib.util
import shutil
import sys
import tempfile
import time
import types
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
FOLDERS = ("schema", "indexer", "retrieval", "migrations")
SECTION = "gpu check (bench/gpu_check.py)"
COLUMNS = ("check", "device", "shape", "repeats", "device ms", "bare/cpu ms", "ratio", "note")
MD_COLUMNS = ("date", "machine", *COLUMNS, "command")
DEFAULT = {"categories": 21000, "members": 50, "dim": 512, "batches": (1, 64, 1024, 4096),
           "train": {"n": 50000, "d_in": 768, "d": 512, "epochs": 3}}
QUICK = {"categories": 300, "members": 20, "dim": 64, "batches": (1, 64),
         "train": {"n": 2000, "d_in": 64, "d": 32, "epochs": 2}}
SCORE_TOLERANCE = 1e-9  # float64 sums of the same exact products, in another order


def use_tree(force: bool = False) -> str:
    """Make ``unibind`` importable from this repository when it is not installed (or ``force``); → where from."""
    if not force and importlib.util.find_spec("unibind") is not None:
        spec = importlib.util.find_spec("unibind.schema")
        return f"installed ({Path(spec.origin).parent if spec and spec.origin else '?'})"
    tmp = tempfile.mkdtemp(prefix="unibind-tree-")
    atexit.register(shutil.rmtree, tmp, True)
    pkg = Path(tmp) / "unibind"
    pkg.mkdir()
    for folder in FOLDERS:
        (pkg / folder).symlink_to(REPO_ROOT / folder, target_is_directory=True)
    sys.path.insert(0, tmp)
    for name in [m for m in sys.modules if m == "unibind" or m.startswith("unibind.")]:
        del sys.modules[name]
    importlib.invalidate_caches()
    if importlib.util.find_spec("tqdm") is None:  # infonce's progress bar; transformers brings tqdm, but be safe
        _stub_tqdm()
    return f"repository tree via {pkg} (symlinks, no install)"


def _stub_tqdm() -> None:
    class _Bar:
        def __init__(self, iterable=None, **_: object) -> None:
            self.iterable = iterable

        def __iter__(self):
            return iter(self.iterable)

        def set_postfix(self, *_: object, **__: object) -> None:
            pass

        def close(self) -> None:
            pass

    top, auto = types.ModuleType("tqdm"), types.ModuleType("tqdm.auto")
    top.tqdm = auto.tqdm = _Bar
    top.auto = auto
    sys.modules["tqdm"], sys.modules["tqdm.auto"] = top, auto


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda when available, else cpu)")
    p.add_argument("--quick", action="store_true", help="a small smoke run (C=300, K=20, d=64, B in 1, 64)")
    p.add_argument("--categories", type=int, default=None, help="C (overrides the preset)")
    p.add_argument("--members", type=int, default=None, help="K members per category (overrides the preset)")
    p.add_argument("--dim", type=int, default=None, help="d (overrides the preset)")
    p.add_argument("--batches", default=None, help="comma-separated B values (overrides the preset)")
    p.add_argument("--k", type=int, default=5, help="categories per query (default 5)")
    p.add_argument("--repeats", type=int, default=None, help="timed repeats per batch (default 7 small, 3 big)")
    p.add_argument("--exact-queries", type=int, default=256, help="queries checked for exactness (default 256)")
    p.add_argument("--no-train", action="store_true", help="skip the head-training check")
    p.add_argument("--append", action="store_true", help="append the rows to BENCHMARKS.md")
    p.add_argument("--from-tree", action="store_true", help="import unibind from this repository even if installed")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--paper-rule", action="store_true",
                   help="the paper's max of raw cosines instead of the default rule (mean of 3 best, centred)")
    return p.parse_args(argv)


def unit(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    x = rng.standard_normal((n, d), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def brute_force(q: np.ndarray, members: np.ndarray, C: int, K: int, k: int, names: list[str], top_m: int = 1):
    """float64 NumPy: per query the mean of the top_m best (1: the max) of each category's K members (rows
    c*K..c*K+K-1), top k by (-score, name) → (labels [n][k], scores [n, k]). ``q`` and ``members`` are the
    vectors the engine scores (for the default rule: the centred members and prepared queries)."""
    n = len(q)
    q64 = q.astype(np.float64)
    best = np.empty((n, C), dtype=np.float64)
    step = max(1, (64 << 20) // (8 * K * max(n, 1)))  # categories per slice: [n, step*K] float64 <= 64 MB
    for c0 in range(0, C, step):
        c1 = min(C, c0 + step)
        z = members[c0 * K : c1 * K].astype(np.float64)  # [(c1-c0)*K, d]
        sims = (q64 @ z.T).reshape(n, c1 - c0, K)
        best[:, c0:c1] = sims.max(axis=2) if top_m == 1 else -np.sort(-sims, axis=2)[:, :, :top_m].mean(axis=2)
    rank = np.argsort(np.argsort(np.asarray(names)))  # name order for ties
    labels, scores = [], np.empty((n, k))
    for i in range(n):
        order = np.lexsort((rank, -best[i]))[:k]
        labels.append([names[c] for c in order])
        scores[i] = best[i, order]
    return labels, scores


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    origin = use_tree(args.from_tree)
    sys.path.insert(0, str(REPO_ROOT))  # bench.report (standard library only)
    import torch
    from unibind.indexer.runtime.device import Device
    from unibind.indexer.runtime.vectors import normalize
    from unibind.indexer.training.infonce import HeadTrainConfig, train_head
    from unibind.retrieval.recognition.dense_engine import DenseEngine
    from unibind.retrieval.recognition.engine import DEFAULT_CENTRING, DEFAULT_TOP_M, CentreTable

    from bench.report import append_rows, command_line, machine, median, now, text_table

    dev_name = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if dev_name == "cuda":
        dev_name = "cuda:0"
    if dev_name.startswith("cuda") and not torch.cuda.is_available():
        print(f"--device {dev_name}: torch sees no GPU", file=sys.stderr)
        return 2
    device, cpu = Device(torch=dev_name), Device()
    sync = torch.cuda.synchronize if device.is_cuda else (lambda: None)
    preset = QUICK if args.quick else DEFAULT
    C = args.categories or preset["categories"]
    K = args.members or preset["members"]
    d = args.dim or preset["dim"]
    batches = tuple(int(b) for b in args.batches.split(",")) if args.batches else preset["batches"]
    host = machine()
    print(f"gpu check: {host}; device {dev_name}; torch {torch.__version__}; unibind from {origin}", flush=True)

    rows: list[list[object]] = []
    rng = np.random.default_rng(args.seed)
    t0 = time.perf_counter()
    members = unit(rng, C * K, d)  # [C*K, d], category c owns rows c*K .. c*K+K-1
    names = [f"category {c}" for c in range(C)]
    table = CentreTable(names, members, np.repeat(np.arange(C, dtype=np.int64), K))
    top_m = 1 if args.paper_rule else DEFAULT_TOP_M
    if not args.paper_rule and DEFAULT_CENTRING:
        table = table.centred()
    engine = DenseEngine(table, device, top_m=top_m)
    z_dev = torch.as_tensor(members).to(dev_name)  # [C*K, d] for the bare product
    sync()
    print(f"C={C} K={K} d={d}: data and engine built in {time.perf_counter() - t0:.1f}s", flush=True)

    def timed(fn) -> float:
        sync()
        t = time.perf_counter()
        fn()
        sync()
        return time.perf_counter() - t

    # (a) recognition: engine vs the bare product, side by side in each repeat
    last_queries, last_result = None, None
    for B in batches:
        picks = rng.integers(0, C * K, size=B)
        queries = normalize(members[picks] + unit(rng, B, d))  # [B, d], cosine ~0.7 to one member
        q_dev = torch.as_tensor(queries).to(dev_name)
        big = 2.0 * B * C * K * d > 2e11
        repeats = args.repeats or (3 if big else 7)
        result = engine.recognize(queries, args.k)  # warm-up (and the exactness check's result)
        (q_dev @ z_dev.T), sync()
        te, tb = [], []
        for _ in range(repeats):
            te.append(timed(lambda e=engine, q=queries: e.recognize(q, args.k)))
            tb.append(timed(lambda q=q_dev, z=z_dev: q @ z.T))  # [B, C*K]
        ratio = median([e / b for e, b in zip(te, tb)])
        rule = "max, raw" if args.paper_rule else f"top-{top_m}{' centred' if table.mean is not None else ''}"
        rows.append([f"recognize (dense engine, {rule}, vs q @ members.T)", dev_name, f"C={C} K={K} d={d} B={B}", repeats,
                     median(te) * 1e3, median(tb) * 1e3, ratio, f"{B / median(te):.0f} queries/s"])
        print(f"B={B}: engine {median(te) * 1e3:.2f} ms, bare {median(tb) * 1e3:.2f} ms, ratio {ratio:.2f}", flush=True)
        last_queries, last_result = queries, result
        del q_dev
    del z_dev
    if device.is_cuda:
        torch.cuda.empty_cache()

    # (b) exactness on the first queries of the largest batch
    n = min(args.exact_queries, len(last_queries))
    dev_res = last_result[:n]
    cpu_engine = DenseEngine(table, cpu, top_m=top_m) if device.is_cuda else engine
    t = time.perf_counter()
    cpu_res = cpu_engine.recognize(last_queries[:n], args.k)
    cpu_s = time.perf_counter() - t
    # the vectors the engines score: the (centred) members and the prepared queries (the centring itself is checked
    # against its definition by the test suite)
    bf_labels, bf_scores = brute_force(table.prepare(last_queries[:n]), table.vectors, C, K, min(args.k, C), names, top_m)
    vs_cpu = sum(a.labels != b.labels or a.scores != b.scores for a, b in zip(dev_res, cpu_res))
    vs_bf = sum(r.labels != lab or not np.allclose(r.scores, s, rtol=0, atol=SCORE_TOLERANCE)
                for r, lab, s in zip(dev_res, bf_labels, bf_scores))
    mismatches = vs_cpu + vs_bf
    exact_line = (f"exactness: {n} queries, k={args.k}: {vs_cpu} mismatch(es) vs the CPU dense engine, "
                  f"{vs_bf} vs the float64 NumPy brute force")
    rows.append(["exactness (top-k labels and scores)", dev_name, f"C={C} K={K} d={d} n={n}", 1, "", cpu_s * 1e3, "",
                 f"{vs_cpu} vs CPU, {vs_bf} vs float64 brute force"])
    del cpu_engine, engine, table, members

    # (c) head training: a few InfoNCE epochs on the device vs the CPU
    if not args.no_train:
        tr = preset["train"]
        rng_t = np.random.default_rng(args.seed + 1)
        texts = unit(rng_t, tr["n"], tr["d"])  # [N, d] one description per sample
        mix = rng_t.standard_normal((tr["d"], tr["d_in"]), dtype=np.float32)
        features = (texts @ mix + 0.5 * rng_t.standard_normal((tr["n"], tr["d_in"]), dtype=np.float32))
        ids = [[i] for i in range(tr["n"])]
        cfg = HeadTrainConfig(max_epochs=tr["epochs"], patience=tr["epochs"], batch_size=256, seed=args.seed)
        per_epoch = {}
        for where in dict.fromkeys([dev_name, "cpu"]):
            res = train_head(features, texts, ids, cfg, Device(torch=where), progress=False)
            secs = [h["train_seconds"] for h in res.history]
            per_epoch[where] = (median(secs[1:] or secs), res.metrics["val_r1"])
        dev_s, dev_r1 = per_epoch[dev_name]
        cpu_s_ep, cpu_r1 = per_epoch["cpu"]
        rows.append(["head training (InfoNCE, ms per epoch)", dev_name,
                     f"N={tr['n']} d_in={tr['d_in']} d={tr['d']} batch 256", tr["epochs"], dev_s * 1e3,
                     cpu_s_ep * 1e3, dev_s / cpu_s_ep, f"val R@1 {dev_r1:.3f} ({dev_name}), {cpu_r1:.3f} (cpu)"])

    date = now()
    print(f"\ngpu check, {date}, {host}; ratio = device ÷ bare product (recognize) or device ÷ CPU (training)")
    print(text_table(COLUMNS, rows))
    print(exact_line)
    if args.append:
        cmd = f"`{command_line('bench/gpu_check.py')}`"
        append_rows(SECTION, MD_COLUMNS, [[date, host, *(round(v, 3) if isinstance(v, float) else v for v in r), cmd]
                                          for r in rows])
        print(f"appended {len(rows)} row(s) to BENCHMARKS.md")
    faiss_in, sqla_in = "faiss" in sys.modules, "sqlalchemy" in sys.modules
    print(f"imported: faiss={faiss_in} sqlalchemy={sqla_in}")
    if mismatches:
        print(f"FAILED: {mismatches} exactness mismatch(es)", file=sys.stderr)
        return 1
    if faiss_in or sqla_in:
        print("FAILED: faiss or sqlalchemy was imported", file=sys.stderr)
        return 1
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
