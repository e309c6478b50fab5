"""Service load: N concurrent clients on loopback for T seconds, recognize and search mixed, one ingest midway.

    .venv/bin/python bench/load.py [--clients 8] [--seconds 30] [--search-share 0.5] [--classes 100]
                                   [--db URL] [--url http://127.0.0.1:PORT] [--api-key KEY] [--no-append]

Setup (unless --url): a temp UNIBIND_HOME with SQLite (or, with ``--db postgresql+psycopg://...``, a fresh
schema on that server, dropped afterwards); ``unibind ingest --builtin cupl-imagenet --classes N --encoder
minilm`` into it; then ``unibind serve --host 127.0.0.1 --port <free port>`` as a subprocess, ready when
``/healthz`` answers. With --url the running server is used as it is (no setup); --db/--home then name its
data for the command-line ingest below.

Load: ``--clients`` threads, each with its own keep-alive ``httpx.Client``, send requests back to back for
``--seconds``: with probability ``--search-share`` ``POST /v1/search {"texts": [...], "target":
"descriptions", "k": 10}``, otherwise ``POST /v1/recognize {"texts": [...], "k": 5}``; the query texts are
drawn (seeded) from a fixed list of descriptive sentences. At T/2 one ingest of a small new corpus (20 new
categories x 5 descriptions) starts: through ``POST /v1/corpora`` (a multipart upload answered with a job
status URL, polled until done) when the server's /openapi.json has it, otherwise ``unibind ingest`` as a
subprocess against the same database and home (the server picks the corpus up without a restart). When the
ingest is still running at T the clients keep going until it ends, so the whole ingest runs under load; the
measured duration is what is reported. After the ingest one recognize of a new category's description
checks that the server sees it.

Per request: latency and status; an error is any non-2xx answer or an exception. Reported per kind
(recognize, search, all): requests, requests/s, p50 and p99 latency (ms), errors; plus the ingest's seconds
and whether errors == 0 (the target). Prints a table and appends rows to BENCHMARKS.md (section "service
load (bench/load.py)") unless --no-append. The server subprocess is stopped on exit, Ctrl-C included. The
clients run in this process (GIL) on the same machine as the server: on a small machine they compete with
it for the CPU, so the rates are a lower bound of what the server alone could do.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import argparse  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import math  # noqa: E402
import random  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from contextlib import ExitStack, contextmanager  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script: the repo root first

import httpx  # noqa: E402

from bench.report import append_rows, command_line, machine, now, text_table  # noqa: E402

log = logging.getLogger("bench.load")

SECTION = "service load (bench/load.py)"
KINDS = ("recognize", "search")
MD_COLUMNS = (
    "date", "machine", "backend", "clients", "seconds", "kind", "requests", "req/s", "p50 ms", "p99 ms",
    "errors", "errors == 0", "ingest s (via)", "load avg 1 min (start/end)", "command",
)
NEW_CATEGORIES = 20
DESCRIPTIONS_PER_CATEGORY = 5
READY_TIMEOUT_S = 300.0
JOB_TIMEOUT_S = 600.0
REQUEST_TIMEOUT_S = 120.0
DONE_STATES = {"done", "complete", "completed", "succeeded", "success", "finished"}
FAILED_STATES = {"failed", "error", "errored", "cancelled", "canceled"}

# Query texts: descriptive sentences of the kind the corpus holds (what a thing looks like), not its name.
SENTENCES = (
    "a small freshwater fish with an olive green back and golden sides",
    "a large white shark with a pointed snout and rows of serrated teeth",
    "a bird with bright red feathers, a crest on its head and a short thick beak",
    "a tall wading bird with long pink legs standing on one foot in shallow water",
    "a spotted big cat resting on the branch of a tree in the savanna",
    "a black and white bear chewing bamboo in a forest",
    "a small dog with a curled tail, pointed ears and a thick reddish coat",
    "a striped insect with transparent wings hovering over a flower",
    "a slow reptile with a domed shell walking on sand",
    "a snake with a hood spread wide and markings on its back",
    "a red double-decker bus driving down a city street",
    "a yellow school bus parked in front of a building",
    "a steam locomotive pulling passenger carriages along a track",
    "a sailing ship with three masts and white sails on the open sea",
    "a small propeller aircraft parked on a grass airfield",
    "a wooden rocking chair on a porch",
    "a grand piano with its lid open in a concert hall",
    "an acoustic guitar with six strings and a round sound hole",
    "a steaming cup of espresso with a layer of crema on top",
    "a round pizza topped with tomato sauce, melted cheese and basil leaves",
    "a bunch of ripe yellow bananas on a kitchen counter",
    "a red fire engine with a ladder on its roof",
    "a lighthouse on a rocky cliff with waves crashing below",
    "a stone bridge with arches crossing a river",
    "a mountain bike with knobby tyres leaning against a tree",
    "a pair of running shoes with laces and a cushioned sole",
    "a wristwatch with a leather strap and a round metal face",
    "an umbrella opened in the rain on a crowded street",
    "a laptop computer open on a desk with a glowing screen",
    "a vintage typewriter with round keys and a roll of paper",
    "a snow-covered mountain peak under a clear blue sky",
    "a sandy beach with palm trees and turquoise water",
    "a jellyfish drifting in dark water with long trailing tentacles",
    "a hermit crab peeking out of a spiral shell",
    "a butterfly with orange wings veined in black sitting on a leaf",
    "a mushroom with a red cap covered in white spots on the forest floor",
    "a hot air balloon floating over green fields at sunrise",
    "a traffic light showing red at an intersection",
    "a teapot made of white porcelain with a blue floral pattern",
    "a large tree frog with red eyes clinging to a leaf",
)


@dataclass
class Sample:
    kind: str
    t: float  # seconds since the load started, when the request was sent
    ms: float
    ok: bool


@dataclass
class IngestRun:
    via: str = ""
    start: float | None = None  # seconds since the load started
    end: float | None = None
    ok: bool = False
    detail: str = ""
    visible: bool | None = None
    categories: list[str] = field(default_factory=list)

    @property
    def seconds(self) -> float | None:
        return None if self.start is None or self.end is None else self.end - self.start


class Server:
    """Where the server is, how to reach its data from the command line, and the server subprocess (if ours)."""

    def __init__(self, url: str, cli: list[str], backend: str, proc: subprocess.Popen[bytes] | None = None,
                 log_path: Path | None = None) -> None:
        self.url, self.cli, self.backend, self.proc, self.log_path = url.rstrip("/"), cli, backend, proc, log_path


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clients", type=int, default=8, help="concurrent client threads (default 8)")
    p.add_argument("--seconds", type=float, default=30.0, help="load duration (default 30; longer when the ingest ends later)")
    p.add_argument("--search-share", type=float, default=0.5, help="share of /v1/search requests (default 0.5)")
    p.add_argument("--texts", type=int, default=1, help="query texts per request (default 1)")
    p.add_argument("--seed", type=int, default=0, help="seed of the query draws (default 0)")
    p.add_argument("--classes", type=int, default=100, help="builtin cupl-imagenet classes ingested first (default 100)")
    p.add_argument("--db", help="own server: a PostgreSQL URL (a fresh schema is made on it); with --url: the "
                                "running server's database, for the command-line ingest")
    p.add_argument("--home", help="with --url: the running server's UNIBIND_HOME, for the command-line ingest")
    p.add_argument("--url", help="an already running server (no setup), e.g. http://127.0.0.1:8000")
    p.add_argument("--api-key", help="sent as X-API-Key (default $UNIBIND_API_KEY); an own server is started with it")
    p.add_argument("--ingest", choices=("auto", "upload", "cli", "none"), default="auto",
                   help="how the midway ingest runs: POST /v1/corpora when the server has it (auto), or the CLI")
    p.add_argument("--no-append", action="store_true", help="print only; do not append to BENCHMARKS.md")
    args = p.parse_args(argv)
    if args.clients < 1 or args.seconds <= 0 or args.texts < 1 or args.classes < 1:
        p.error("--clients, --texts and --classes must be >= 1 and --seconds > 0")
    if not 0.0 <= args.search_share <= 1.0:
        p.error("--search-share must be in [0, 1]")
    if args.db and not args.url and not args.db.startswith("postgresql"):
        p.error("--db without --url: a PostgreSQL URL (SQLite is the default, in a temp folder)")
    if args.home and not args.url:
        p.error("--home is for --url (an own server gets a temp home)")
    from unibind.schema.settings import Settings

    settings = Settings.resolve(db=args.db, home=args.home)  # the UNIBIND_* variables, read where the CLI reads them
    if args.api_key is None:
        args.api_key = settings.api_key
    args.database_url = settings.database_url  # with --url: the database the command-line ingest reaches
    return args


def unibind_cmd() -> list[str]:
    exe = Path(sys.executable).parent / "unibind"
    if exe.exists():
        return [str(exe)]
    found = shutil.which("unibind")
    return [found] if found else [sys.executable, "-c", "import sys; from unibind.retrieval.cli.main import main; sys.exit(main())"]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def headers(api_key: str | None) -> dict[str, str]:
    return {"X-API-Key": api_key} if api_key else {}


def run_cli(cmd: list[str], what: str, env: dict[str, str] | None = None) -> float:
    log.info("%s: %s", what, " ".join(cmd))
    t = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - t
    if done.returncode != 0:
        raise RuntimeError(f"{what} failed (exit {done.returncode}): {(done.stderr or done.stdout).strip()[-2000:]}")
    return seconds


def stop(proc: subprocess.Popen[Any], name: str) -> None:
    """SIGTERM to the process group, SIGKILL after 10 s."""
    if proc.poll() is not None:
        return
    log.info("stopping %s (pid %d)", name, proc.pid)
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    except ProcessLookupError:
        pass


@contextmanager
def own_server(args: argparse.Namespace, stack: ExitStack) -> Iterator[Server]:
    """A temp home with SQLite (or a fresh PostgreSQL schema), the builtin slice ingested, ``unibind serve``."""
    tmp = Path(tempfile.mkdtemp(prefix="unibind-load-"))
    stack.callback(shutil.rmtree, tmp, ignore_errors=True)
    home = tmp / "home"
    if args.db:
        from bench.ingest import PgServer

        pg = PgServer(args.db)
        stack.callback(pg.dispose)
        db_url = stack.enter_context(pg.fresh_schema())
        backend = "postgres"
    else:
        db_url = f"sqlite:///{tmp / 'unibind.db'}"
        backend = "sqlite"
    cli = [*unibind_cmd(), "--db", db_url, "--home", str(home)]
    seconds = run_cli([*cli, "ingest", "--builtin", "cupl-imagenet", "--classes", str(args.classes),
                       "--encoder", "minilm"], f"setup ingest ({backend})")
    log.info("setup ingest of %d builtin classes took %.1fs", args.classes, seconds)

    port = free_port()
    env = dict(os.environ)
    if args.api_key:
        env["UNIBIND_API_KEY"] = args.api_key
    log_path = tmp / "server.log"
    with open(log_path, "wb") as out:
        proc = subprocess.Popen([*cli, "serve", "--host", "127.0.0.1", "--port", str(port)], stdout=out,
                                stderr=subprocess.STDOUT, env=env, start_new_session=True)
    server = Server(f"http://127.0.0.1:{port}", cli, backend, proc, log_path)
    try:
        wait_ready(server)
        yield server
    finally:
        stop(proc, "server")


def wait_ready(server: Server) -> None:
    t = time.perf_counter()
    deadline = t + READY_TIMEOUT_S
    while time.perf_counter() < deadline:
        if server.proc is not None and server.proc.poll() is not None:
            raise RuntimeError(f"the server exited with {server.proc.returncode} before it was ready:\n{tail(server)}")
        try:
            if httpx.get(f"{server.url}/healthz", timeout=2.0).status_code == 200:
                log.info("server ready at %s after %.1fs", server.url, time.perf_counter() - t)
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    raise RuntimeError(f"the server at {server.url} was not ready within {READY_TIMEOUT_S:.0f}s:\n{tail(server)}")


def tail(server: Server, n: int = 40) -> str:
    if server.log_path is None or not server.log_path.exists():
        return ""
    return "\n".join(server.log_path.read_text(errors="replace").splitlines()[-n:])


def corpus_upload_route(server: Server, api_key: str | None) -> dict[str, Any] | None:
    """The OpenAPI operation of ``POST /v1/corpora``, or None when the server has none."""
    try:
        r = httpx.get(f"{server.url}/openapi.json", headers=headers(api_key), timeout=30.0)
        r.raise_for_status()
        return r.json().get("paths", {}).get("/v1/corpora", {}).get("post")
    except (httpx.HTTPError, ValueError) as e:
        log.warning("could not read %s/openapi.json (%s): using the command-line ingest", server.url, e)
        return None


def new_corpus(tag: str) -> tuple[dict[str, list[str]], list[str]]:
    """20 made-up categories x 5 descriptions (names unique per run, so runs against one server don't clash)."""
    colours = ("crimson", "teal", "amber", "violet", "ochre")
    shapes = ("spiral", "hexagonal", "spindly", "lumpy", "fan-shaped")
    data: dict[str, list[str]] = {}
    for i in range(NEW_CATEGORIES):
        name = f"loadtest {tag} thing {i:02d}"
        c, s = colours[i % len(colours)], shapes[(i // len(colours)) % len(shapes)]
        data[name] = [
            f"a {c} {s} object number {i} used in a load test",
            f"the {name} is {c} with a {s} outline and a matte surface",
            f"a photo of a {c}, {s} load-test thing on a white table, specimen {i}",
            f"{name}: small, {s}, {c}, about the size of a hand",
            f"a close-up of the {s} edge of a {c} test object labelled {i}",
        ]
    return data, list(data)


def ingest_upload(server: Server, op: dict[str, Any], api_key: str | None, path: Path, name: str) -> str:
    """Upload through ``POST /v1/corpora`` and poll the job until it is done; the job's last state as text."""
    props: dict[str, Any] = {}
    for ctype, body in (op.get("requestBody", {}).get("content", {}) or {}).items():
        if ctype.startswith("multipart/"):
            schema = body.get("schema", {})
            props = schema.get("properties", {}) if "properties" in schema else {}
    file_field = next((k for k, v in props.items() if isinstance(v, dict) and v.get("format") == "binary"), "file")
    form = {k: v for k, v in (("name", name), ("source", "bench/load.py")) if k in props}
    with httpx.Client(base_url=server.url, headers=headers(api_key), timeout=REQUEST_TIMEOUT_S) as client:
        with open(path, "rb") as f:
            r = client.post("/v1/corpora", files={file_field: (path.name, f, "application/json")}, data=form)
        if r.status_code >= 300:
            raise RuntimeError(f"POST /v1/corpora answered {r.status_code}: {r.text[:500]}")
        body = r.json() if r.content else {}
        status_url = (r.headers.get("location") or body.get("status_url") or body.get("url") or body.get("href")
                      or body.get("job_url") or (f"/v1/jobs/{body['id']}" if "id" in body else None))
        if not status_url:
            raise RuntimeError(f"POST /v1/corpora answered {r.status_code} without a status URL: {r.text[:500]}")
        log.info("ingest job accepted (%d): polling %s", r.status_code, status_url)
        deadline = time.perf_counter() + JOB_TIMEOUT_S
        while time.perf_counter() < deadline:
            job = client.get(status_url)
            if job.status_code >= 300:
                raise RuntimeError(f"GET {status_url} answered {job.status_code}: {job.text[:500]}")
            view = job.json()
            state = str(view.get("state") or view.get("status") or "").lower()
            if state in DONE_STATES:
                return job.text[:300]
            if state in FAILED_STATES:
                raise RuntimeError(f"ingest job {status_url} {state}: {job.text[:500]}")
            time.sleep(0.2)
    raise RuntimeError(f"ingest job {status_url} not done within {JOB_TIMEOUT_S:.0f}s")


def midway_ingest(server: Server, args: argparse.Namespace, result: IngestRun, t0: float, at: float,
                  stop_event: threading.Event, children: list[subprocess.Popen[Any]]) -> None:
    """Sleeps until ``at`` seconds after ``t0``, then runs the one ingest; the outcome goes into ``result``."""
    tag = time.strftime("%Y%m%d-%H%M%S")
    data, result.categories = new_corpus(tag)
    tmp = Path(tempfile.mkdtemp(prefix="unibind-load-corpus-"))
    path = tmp / f"loadtest-{tag}.json"
    path.write_text(json.dumps(data, indent=1))
    name = f"loadtest-{tag}"
    op = None if args.ingest in ("cli", "none") else corpus_upload_route(server, args.api_key)
    if args.ingest == "upload" and op is None:
        result.detail = "the server has no POST /v1/corpora"
        return
    result.via = "upload" if op is not None else "cli"
    if stop_event.wait(max(0.0, t0 + at - time.perf_counter())):
        return
    result.start = time.perf_counter() - t0
    log.info("ingest (%s) of %d new categories starts at %.1fs", result.via, len(data), result.start)
    try:
        if op is not None:
            result.detail = ingest_upload(server, op, args.api_key, path, name)
        else:
            cmd = [*server.cli, "ingest", str(path), "--name", name, "--source", "bench/load.py", "--encoder", "minilm"]
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                    start_new_session=True)
            children.append(proc)
            out, _ = proc.communicate()
            if proc.returncode != 0:
                raise RuntimeError(f"{' '.join(cmd)} failed (exit {proc.returncode}): {out.strip()[-2000:]}")
            result.detail = out.strip().splitlines()[-1] if out.strip() else ""
        result.ok = True
    except Exception as e:  # noqa: BLE001 - reported, and the run fails on it
        result.detail = str(e)
        log.error("ingest failed: %s", e)
    finally:
        result.end = time.perf_counter() - t0
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("ingest (%s) finished at %.1fs (%.1fs), ok=%s", result.via, result.end, result.seconds, result.ok)


def check_visible(server: Server, api_key: str | None, result: IngestRun) -> None:
    """After the ingest: a new category's own description should come back as its top category."""
    if not result.ok or not result.categories:
        return
    cat = result.categories[3]
    data, _ = new_corpus(cat.split(" ")[1])
    text = data[cat][1]
    try:
        r = httpx.post(f"{server.url}/v1/recognize", json={"texts": [text], "k": 1}, headers=headers(api_key),
                       timeout=REQUEST_TIMEOUT_S)
        result.visible = r.status_code == 200 and r.json()[0]["labels"][:1] == [cat]
        if not result.visible:
            log.warning("the new corpus is not visible: %r answered %d %s", text, r.status_code, r.text[:300])
    except (httpx.HTTPError, ValueError, KeyError, IndexError) as e:
        result.visible = False
        log.warning("visibility check failed: %s", e)


def client_loop(idx: int, server: Server, args: argparse.Namespace, t0: float, ingest_done: threading.Event,
                stop_event: threading.Event, out: list[Sample], errors: list[str]) -> None:
    """Requests back to back until ``--seconds`` have passed and the ingest is done (or ``stop_event``)."""
    until = t0 + args.seconds
    rng = random.Random(args.seed * 1_000_003 + idx)
    with httpx.Client(base_url=server.url, headers=headers(args.api_key), timeout=REQUEST_TIMEOUT_S) as client:
        while not stop_event.is_set() and (time.perf_counter() < until or not ingest_done.is_set()):
            texts = rng.sample(SENTENCES, args.texts) if args.texts <= len(SENTENCES) else rng.choices(SENTENCES, k=args.texts)
            if rng.random() < args.search_share:
                kind, route, body = "search", "/v1/search", {"texts": texts, "target": "descriptions", "k": 10}
            else:
                kind, route, body = "recognize", "/v1/recognize", {"texts": texts, "k": 5}
            start = time.perf_counter()
            ok, why = False, ""
            try:
                r = client.post(route, json=body)
                ok = 200 <= r.status_code < 300
                if not ok:
                    why = f"{r.status_code} {r.text[:200]}"
            except Exception as e:  # noqa: BLE001 - every exception is an error of this request
                why = f"{type(e).__name__}: {e}"
            ms = (time.perf_counter() - start) * 1000.0
            out.append(Sample(kind, start - t0, ms, ok))
            if not ok:
                errors.append(f"{kind} at {start - t0:.1f}s: {why}")


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    if not values:
        return float("nan")
    s = sorted(values)
    return s[max(0, min(len(s) - 1, math.ceil(q / 100.0 * len(s)) - 1))]


def summarize(samples: list[Sample], duration: float) -> list[list[object]]:
    rows: list[list[object]] = []
    for kind in (*KINDS, "all"):
        sel = [s for s in samples if kind == "all" or s.kind == kind]
        lat = [s.ms for s in sel]
        errs = sum(not s.ok for s in sel)
        rows.append([kind, len(sel), round(len(sel) / duration, 1), round(percentile(lat, 50), 1),
                     round(percentile(lat, 99), 1), errs])
    return rows


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    args = parse_args(argv)
    # SIGTERM ends the run like Ctrl-C does, so the server subprocess is stopped either way
    signal.signal(signal.SIGTERM, _interrupt)

    children: list[subprocess.Popen[Any]] = []
    with ExitStack() as stack:
        if args.url:
            cli = [*unibind_cmd(), *(["--db", args.db] if args.db else []), *(["--home", args.home] if args.home else [])]
            backend = "postgres" if args.database_url.startswith("postgres") else "sqlite?"
            server = Server(args.url, cli, backend)
            wait_ready(server)
        else:
            server = stack.enter_context(own_server(args, stack))
        stack.callback(lambda: [stop(c, "ingest") for c in children])

        # one untimed request of each kind: first-call allocations and lazy loads are not the load test's
        for route, body in (("/v1/recognize", {"texts": [SENTENCES[0]], "k": 5}),
                            ("/v1/search", {"texts": [SENTENCES[1]], "target": "descriptions", "k": 10})):
            r = httpx.post(f"{server.url}{route}", json=body, headers=headers(args.api_key), timeout=REQUEST_TIMEOUT_S)
            if r.status_code != 200:
                raise SystemExit(f"warm-up {route} answered {r.status_code}: {r.text[:500]}")

        load_start = os.getloadavg()[0]
        stop_event = threading.Event()
        samples: list[list[Sample]] = [[] for _ in range(args.clients)]
        errors: list[str] = []
        ingest = IngestRun()
        ingest_done = threading.Event()
        t0 = time.perf_counter()
        threads = [threading.Thread(target=client_loop, name=f"client-{i}", daemon=True,
                                    args=(i, server, args, t0, ingest_done, stop_event, samples[i], errors))
                   for i in range(args.clients)]
        ingester = None
        if args.ingest != "none":
            ingester = threading.Thread(target=midway_ingest, name="ingest", daemon=True,
                                        args=(server, args, ingest, t0, args.seconds / 2, stop_event, children))
        else:
            ingest_done.set()
        try:
            for t in threads:
                t.start()
            if ingester is not None:
                ingester.start()
                ingester.join()
                ingest_done.set()
                if ingest.end is not None and ingest.end > args.seconds:
                    log.info("the ingest ended after --seconds: the clients ran until it was done")
            for t in threads:
                t.join()
        except KeyboardInterrupt:
            log.warning("interrupted: stopping the clients and the server")
            stop_event.set()
            raise
        duration = max(time.perf_counter() - t0, 1e-9)
        load_end = os.getloadavg()[0]
        check_visible(server, args.api_key, ingest)
        if server.proc is not None and server.proc.poll() is not None:
            errors.append(f"the server exited with {server.proc.returncode} during the run")

    flat = [s for per in samples for s in per]
    rows = summarize(flat, duration)
    total_errors = sum(not s.ok for s in flat) + (0 if ingest.ok or args.ingest == "none" else 1)
    zero = "yes" if total_errors == 0 else "no"
    ing = f"{ingest.seconds:.1f} ({ingest.via})" if ingest.seconds is not None else f"none ({ingest.detail or args.ingest})"
    host = machine()
    date = now()
    print(f"\nservice load, {date}, {host}, {server.backend}, {args.clients} clients, {duration:.1f}s "
          f"(--seconds {args.seconds:g}), search share {args.search_share:g}, {args.texts} text(s)/request")
    print(text_table(["kind", "requests", "req/s", "p50 ms", "p99 ms", "errors"], rows))
    if ingest.start is not None:
        print(f"ingest via {ingest.via}: {NEW_CATEGORIES}x{DESCRIPTIONS_PER_CATEGORY} descriptions, "
              f"{ingest.start:.1f}s -> {ingest.end:.1f}s ({ingest.seconds:.1f}s), ok={ingest.ok}, "
              f"visible to queries afterwards: {ingest.visible}")
        during = [s.ms for s in flat if ingest.start <= s.t <= (ingest.end or ingest.start)]
        if during:
            print(f"requests sent during the ingest: {len(during)}, p50 {percentile(during, 50):.1f} ms, "
                  f"p99 {percentile(during, 99):.1f} ms")
    if not ingest.ok and args.ingest != "none":
        print(f"ingest error: {ingest.detail}")
    print(f"load average (1 min): {load_start:.2f} at the start, {load_end:.2f} at the end")
    print(f"errors: {total_errors} (target 0: {zero})")
    for e in errors[:10]:
        print(f"  {e}")

    if not args.no_append:
        cmd = f"`{command_line('bench/load.py')}`"
        md_rows = [[date, host, server.backend, args.clients, round(duration, 1), *row, zero, ing,
                    f"{load_start:.2f}/{load_end:.2f}", cmd] for row in rows]
        for r in md_rows:  # errors == 0 is per row; the run's verdict (with the ingest) is "all"
            r[MD_COLUMNS.index("errors == 0")] = "yes" if r[MD_COLUMNS.index("errors")] == 0 else "no"
        md_rows[-1][MD_COLUMNS.index("errors == 0")] = zero
        append_rows(SECTION, MD_COLUMNS, md_rows)
    return 0 if total_errors == 0 else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # the server and any ingest subprocess were stopped on the way out
        sys.exit(130)
