"""The zero-shot comparison offline, and what 50,000 images cost in memory.

    .venv/bin/python bench/zero_shot.py [--home DIR] [--classes N] [--holdout 10] [--seed 0] [--no-append]
    .venv/bin/python bench/zero_shot.py --memory [--home DIR] [--images 50000] [--small 2000] [--no-append]

The demonstration: the dev benchmark's queries (held-out CuPL LLM descriptions of the builtin ImageNet corpus with the
class name masked, retrieval/evaluation/dev_benchmark.py) are written as a ``jsonl:`` dataset and classified by
``unibind eval zero-shot`` with MiniLM against the rest of the builtin descriptions (the corpus
``dev-cupl-descriptions-TAG``, ingested once under --home, default unibind-data/dev). Appends one dated row per
classifier to BENCHMARKS.md (section "zero-shot comparison (bench/zero_shot.py)").

``--memory``: a tiny seeded open_clip space and webdataset shards of synthetic 32x32 images; ``eval zero-shot`` runs
in a child process on --small and on --images samples, and the children's peak RSS is compared (only the vectors are
kept: the difference should be about the vectors' size, not the decoded images'). Appends to "zero-shot memory".
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import argparse  # noqa: E402
import contextlib  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tarfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.report import append_rows, command_line, machine, now, text_table  # noqa: E402

SECTION = "zero-shot comparison (bench/zero_shot.py)"
COLUMNS = ("date", "machine", "encoder", "dataset", "corpus", "classifier", "queries", "classes", "top-1 %",
           "top-1 95 % CI", "top-5 %", "mean per-class recall %", "top-1 vs prompt", "command")
MEMORY_SECTION = "zero-shot memory (bench/zero_shot.py --memory)"
MEMORY_COLUMNS = ("date", "machine", "images", "classes", "peak RSS MB", "vectors MB", "decoded images MB", "command")
N_COLOURS = 10
RSS_CHILD = """
import resource, sys
from unibind.retrieval.cli.main import main
code = main(sys.argv[1:])
print("PEAK_RSS_KB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)
sys.exit(code)
"""


def _pct(x: float) -> str:
    return f"{100 * x:.2f}"


def demo(args: argparse.Namespace) -> int:
    from unibind.indexer.encoders.factory import build_encoder
    from unibind.indexer.runtime.device import select_device
    from unibind.retrieval.cli.main import main as unibind
    from unibind.retrieval.evaluation.dev_benchmark import _ensure_corpus, make_split
    from unibind.schema import Database
    from unibind.schema.settings import Settings

    home = Path(args.home).resolve()
    home.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{home / 'unibind.db'}"
    db = Database(url)
    device = select_device(Settings.resolve().device)
    encoder = build_encoder("minilm", device)
    split = make_split(args.classes, args.holdout, args.seed)
    corpus = f"dev-cupl-descriptions-{split.tag}"
    _ensure_corpus(db, device, home, encoder, corpus, split.descriptions,
                   "builtin cupl-imagenet LLM descriptions minus held-out queries")
    db.dispose()
    queries = home / f"zero-shot-queries-{split.tag}.jsonl"
    queries.write_text("".join(json.dumps({"text": q.text, "label": q.label}) + "\n" for q in split.queries),
                       encoding="utf-8")
    t0 = time.perf_counter()
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = unibind(["--db", url, "--home", str(home), "eval", "zero-shot", "--dataset", f"jsonl:{queries}",
                        "--corpus", corpus, "--encoder", "minilm", "--json"])
    if code:
        return code
    records = json.loads(out.getvalue())
    table = []
    for r in records:
        m, ci, d = r["metrics"], r["intervals"]["acc1"], r["difference_to_prompt"]
        table.append((r["classifier"], r["queries"], r["categories"], _pct(m["acc1"]),
                      f"[{_pct(ci[0])}, {_pct(ci[1])}]", _pct(m["acc5"]), _pct(m["mean_per_class_recall"]),
                      "-" if d is None else f"{100 * d['acc1']:+.2f} [{100 * d['acc1_ci'][0]:+.2f}, "
                                            f"{100 * d['acc1_ci'][1]:+.2f}]"))
    print(f"zero-shot on the dev queries {split.tag}, minilm, {machine()}, {time.perf_counter() - t0:.0f} s")
    print(text_table(COLUMNS[5:-1], table))
    if not args.no_append:
        cmd = command_line("bench/zero_shot.py")
        append_rows(SECTION, COLUMNS, [(now(), machine(), "minilm", f"dev queries {split.tag}", corpus, *row, cmd)
                                       for row in table])
    return 0


def _shards(folder: Path, n: int, per_shard: int = 5000) -> str:
    """Synthetic 32x32 images of N_COLOURS classes (a coloured square on noise) in tar shards; returns the pattern."""
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "classnames.txt").write_text("".join(f"colour {c}\n" for c in range(N_COLOURS)), encoding="utf-8")
    rng = np.random.default_rng(0)
    palette = rng.integers(0, 256, (N_COLOURS, 3))
    shards = (n + per_shard - 1) // per_shard
    for s in range(shards):
        with tarfile.open(folder / f"{s:06d}.tar", "w") as tar:
            for i in range(s * per_shard, min(n, (s + 1) * per_shard)):
                c = i % N_COLOURS
                pixels = rng.integers(0, 80, (32, 32, 3), dtype=np.uint8)
                pixels[8:24, 8:24] = palette[c]
                buf = io.BytesIO()
                Image.fromarray(pixels).save(buf, format="PNG")
                for ext, data in (("png", buf.getvalue()), ("cls", str(c).encode())):
                    info = tarfile.TarInfo(f"{i:08d}.{ext}")
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
    return str(folder / f"{{000000..{shards - 1:06d}}}.tar")


def memory(args: argparse.Namespace) -> int:
    from tests.tiny_models import make_tiny_open_clip

    home = Path(args.home).resolve() / "memory"
    home.mkdir(parents=True, exist_ok=True)
    spec = make_tiny_open_clip(home / "model")
    kb = home / "kb.json"
    kb.write_text(json.dumps({f"colour {c}": [f"a square of colour number {c}", f"paint of shade {c}"]
                              for c in range(N_COLOURS)}), encoding="utf-8")
    python = sys.executable
    base = [python, "-c", RSS_CHILD, "--db", f"sqlite:///{home / 'unibind.db'}", "--home", str(home)]
    subprocess.run([*base, "ingest", str(kb), "--name", "colours", "--encoder", spec, "--replace"], check=True,
                   capture_output=True)
    rows = []
    for n in (args.small, args.images):
        pattern = _shards(home / f"shards-{n}", n)
        t0 = time.perf_counter()
        done = subprocess.run([*base, "eval", "zero-shot", "--dataset", f"webdataset:{pattern}", "--no-cache",
                               "--classifiers", "prompt", "--json"], capture_output=True, text=True)
        if done.returncode:
            print(done.stderr, file=sys.stderr)
            return done.returncode
        peak = int(done.stderr.rsplit("PEAK_RSS_KB", 1)[1].split()[0]) / 1024
        (record,) = json.loads(done.stdout)
        assert record["queries"] == n, record
        rows.append((n, N_COLOURS, f"{peak:.0f}", f"{n * 32 * 4 / 2**20:.1f}", f"{n * 32 * 32 * 3 / 2**20:.0f}"))
        print(f"{n} images: peak RSS {peak:.0f} MB in {time.perf_counter() - t0:.0f} s")
    print(text_table(MEMORY_COLUMNS[2:-1], rows))
    if not args.no_append:
        cmd = command_line("bench/zero_shot.py")
        append_rows(MEMORY_SECTION, MEMORY_COLUMNS, [(now(), machine(), *row, cmd) for row in rows])
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--home", default="unibind-data/dev", help="the store (default unibind-data/dev)")
    p.add_argument("--classes", type=int, default=None, help="first N builtin classes (default all 998)")
    p.add_argument("--holdout", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--memory", action="store_true", help="the memory check instead of the demonstration")
    p.add_argument("--images", type=int, default=50_000)
    p.add_argument("--small", type=int, default=2_000)
    p.add_argument("--no-append", action="store_true")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("alembic", "faiss.loader", "sentence_transformers", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return memory(args) if args.memory else demo(args)


if __name__ == "__main__":
    sys.exit(main())
