"""Head training speed and quality on a synthetic paired set, side by side with a bare torch loop.

    .venv/bin/python bench/heads.py [--n 100000] [--d-in 1024] [--d 384] [--per-category 10]
                                    [--descriptions 3] [--noise 5] [--epochs 10] [--repeats 3] [--device cpu]
                                    [--no-record]

Data (seeded): n / per-category categories, each with a random unit "base" vector in the d-dim text space
and ``--descriptions`` paraphrases of it (base plus noise, cosine ≈ 0.97 to the base, unit rows): the text
vectors. Each of the n samples belongs to one category; its features are a fixed random linear map
A [d_in, d] of (its category's base + a per-sample variation of norm 0.3) plus isotropic Gaussian noise
whose norm is ``--noise`` times the signal's (default 5: hard enough that val R@1 is not saturated): the
stand-in for a frozen modality encoder (d_in = 1024 like ImageBind audio, d = 384 like MiniLM).
A sample's descriptions are its category's paraphrases, so paraphrases of one category are shared by its
~per-category samples and are masked as negatives for one another. Training uses the default
HeadTrainConfig except max_epochs = --epochs (early stopping may stop sooner).

Each repeat trains a head with ``train_head`` and then runs one epoch of a bare torch loop on the same
training rows (the same Linear, normalisation and InfoNCE loss, one fixed description per sample, no
masking, no validation, no per-step host work), after a warm-up: ratio = our median training-epoch time (validation
excluded) ÷ the bare epoch. Reported: medians over repeats of the training seconds per epoch per 100k
pairs, the whole ``train_head`` call (validation included), the bare epoch per 100k pairs and the ratio;
the epochs run and the val R@1 / R@5 (retrieval of a held-out sample's own descriptions among all distinct
descriptions of the val set; chance = 1 / val texts), and the untrained head's val R@1. Prints a table and
appends a row to BENCHMARKS.md (section "head training (bench/heads.py)") unless --no-record.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script: the repo root first

from bench.report import append_rows, command_line, machine, median, now, text_table  # noqa: E402

if TYPE_CHECKING:
    from unibind.indexer.runtime.device import Device
    from unibind.indexer.training.infonce import HeadTrainConfig

log = logging.getLogger("bench.heads")

SECTION = "head training (bench/heads.py)"
COLUMNS = (
    "n pairs", "d_in", "d", "texts", "noise", "epochs", "best epoch", "train s/epoch/100k", "train_head s",
    "bare s/epoch/100k", "ratio ours÷bare", "val R@1", "val R@5", "untrained R@1", "chance",
)
MD_COLUMNS = ("date", "machine", "device", "torch threads", *COLUMNS, "repeats", "command")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=100_000, help="pairs (default 100000)")
    p.add_argument("--d-in", type=int, default=1024, help="feature dimension (default 1024)")
    p.add_argument("--d", type=int, default=384, help="text space dimension (default 384)")
    p.add_argument("--per-category", type=int, default=10, help="samples per category (default 10)")
    p.add_argument("--descriptions", type=int, default=3, help="descriptions per category (default 3)")
    p.add_argument("--noise", type=float, default=5.0, help="feature noise norm ÷ signal norm (default 5)")
    p.add_argument("--epochs", type=int, default=10, help="max_epochs for training (default 10)")
    p.add_argument("--repeats", type=int, default=3, help="trainings timed (default 3)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N, auto (default cpu)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-record", action="store_true", help="print only; do not append to BENCHMARKS.md")
    args = p.parse_args(argv)
    if min(args.n, args.d_in, args.d, args.per_category, args.descriptions, args.epochs, args.repeats) < 1:
        p.error("all sizes, --epochs and --repeats must be >= 1")
    if args.noise < 0:
        p.error("--noise must be >= 0")
    if args.n // args.per_category < 2:
        p.error("--n / --per-category must give at least 2 categories")
    return args


def synthetic_pairs(n: int, d_in: int, d: int, per_category: int, descriptions: int,
                    seed: int, noise: float = 5.0) -> tuple[np.ndarray, np.ndarray, list[list[int]]]:
    """(features [n, d_in], text vectors [C * descriptions, d], text_ids): see the module docstring."""
    from unibind.indexer.runtime.vectors import normalize

    rng = np.random.default_rng(seed)
    n_cat = n // per_category
    base = normalize(rng.standard_normal((n_cat, d), dtype=np.float32))  # [C, d]
    jitter = 0.25 * rng.standard_normal((n_cat * descriptions, d), dtype=np.float32) / np.sqrt(d)
    texts = normalize(np.repeat(base, descriptions, axis=0) + jitter)  # [C*k, d], paraphrases of each base
    A = rng.standard_normal((d_in, d), dtype=np.float32) / np.sqrt(d)  # [d_in, d], the "encoder"
    category = rng.integers(0, n_cat, n)  # [n]
    signal = base[category] + 0.3 * rng.standard_normal((n, d), dtype=np.float32) / np.sqrt(d)  # [n, d]
    features = signal @ A.T + noise / np.sqrt(d) * rng.standard_normal((n, d_in), dtype=np.float32)  # [n, d_in]
    ids = [list(range(c * descriptions, (c + 1) * descriptions)) for c in category.tolist()]
    return np.ascontiguousarray(features, dtype=np.float32), texts, ids


def bare_epoch(features: np.ndarray, texts: np.ndarray, rows: np.ndarray, picks: np.ndarray, config: HeadTrainConfig,
               device: Device) -> float:
    """Seconds for one epoch of the plainest InfoNCE loop over ``rows`` (one description each)."""
    import torch
    import torch.nn.functional as F

    dev = device.torch
    X, Z = torch.from_numpy(features).to(dev), torch.from_numpy(texts).to(dev)  # [N, d_in], [T, d]
    r, p = torch.from_numpy(rows).to(dev), torch.from_numpy(picks).to(dev)  # [n], [n]
    linear = torch.nn.Linear(features.shape[1], texts.shape[1]).to(dev)
    opt = torch.optim.AdamW(linear.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scale, B = 1.0 / config.temperature, config.batch_size
    sync = torch.cuda.synchronize if device.is_cuda else (lambda: None)
    sync()
    t = time.perf_counter()
    for s in range(0, len(rows) - 1, B):
        v = F.normalize(linear(X[r[s : s + B]]), dim=-1)  # [B, d]
        logits = scale * v @ Z[p[s : s + B]].T  # [B, B]
        loss = F.cross_entropy(logits, torch.arange(len(logits), device=dev))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    sync()
    return time.perf_counter() - t


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)

    import torch

    from unibind.indexer.runtime.device import select_device
    from unibind.indexer.training.infonce import HeadTrainConfig, train_head

    device = select_device(args.device)
    host = machine()
    t = time.perf_counter()
    features, texts, ids = synthetic_pairs(args.n, args.d_in, args.d, args.per_category, args.descriptions, args.seed,
                                           args.noise)
    log.info("data: %d pairs, d_in %d, %d texts of d %d, built in %.1fs; device %s, torch threads %d", args.n,
             args.d_in, len(texts), args.d, time.perf_counter() - t, device.describe(), torch.get_num_threads())
    config = HeadTrainConfig(max_epochs=args.epochs, seed=args.seed)
    warm = HeadTrainConfig(max_epochs=1, seed=args.seed)  # one-time costs (torch.optim's lazy imports) off the clock
    train_head(features[:512], texts, ids[:512], warm, device, progress=False)

    rng = np.random.default_rng(args.seed + 1)
    per_100k = 100_000 / (args.n * (1 - config.val_fraction))
    results: list[dict[str, float]] = []
    for rep in range(args.repeats):
        res = train_head(features, texts, ids, config, device, progress=None)
        m = res.metrics
        rows = rng.permutation(args.n)[: int(m["n_train"])]
        picks = np.array([ids[i][0] for i in rows.tolist()], dtype=np.int64)
        bare = bare_epoch(features, texts, rows, picks, config, device)
        epoch_s = median([h["train_seconds"] for h in res.history])
        results.append({**m, "epoch_s": epoch_s, "bare_s": bare, "ratio": epoch_s / bare})
        log.info("repeat %d/%d: %d epochs, train %.2fs/epoch, bare %.2fs/epoch, ratio %.2f, val R@1 %.3f, "
                 "train_head %.1fs", rep + 1, args.repeats, m["epochs"], epoch_s, bare, epoch_s / bare,
                 m["val_r1"], m["seconds"])

    def med(key: str) -> float:
        return median([r[key] for r in results])

    first = results[0]
    row = [
        args.n, args.d_in, args.d, len(texts), args.noise, int(first["epochs"]), int(first["best_epoch"]),
        med("epoch_s") * per_100k, med("seconds"), med("bare_s") * per_100k, med("ratio"),
        first["val_r1"], first["val_r5"], first["untrained_val_r1"], 1 / first["val_texts"],
    ]
    date = now()
    print(f"\nhead training benchmark, {date}, {host}, {device.describe()}, torch threads "
          f"{torch.get_num_threads()}, medians of {args.repeats} repeats; n_train {int(first['n_train'])}, "
          f"n_val {int(first['n_val'])}")
    print(text_table(COLUMNS, [row]))
    if not args.no_record:
        cmd = f"`{command_line('bench/heads.py')}`"
        append_rows(SECTION, MD_COLUMNS, [[date, host, device.describe(), torch.get_num_threads(), *(
            round(v, 4) if isinstance(v, float) else v for v in row), args.repeats, cmd]])
    return 0


if __name__ == "__main__":
    sys.exit(main())
