"""Encoding on Ray Data actors: the same vectors as the local encoder, computed by a pool of remote actors.

:class:`RayEncoder` wraps an encoder that was loaded in this process (the *probe*: it gives ``spec``, ``dim`` and
``modalities``, and the driver needs ``dim`` anyway). Each :meth:`~RayEncoder.encode_text` /
:meth:`~RayEncoder.encode_images` call runs one Ray Data job: the inputs become rows ``{"id", "item"}``, a pool of
``concurrency`` actors (each with ``num_cpus`` CPUs and ``num_gpus`` GPUs, one model per actor, built once by
:func:`~unibind.indexer.encoders.factory.build_encoder`) turns batches of rows into ``{"id", "vector"}``, and the
driver puts the vectors back in input order *by id* (Ray does not keep the order of batches), checking that every
id came back exactly once.

Only encoding runs on Ray: the caller (an ingest, a gallery add) stays the one writer that publishes. A job has a
fixed cost (starting the actors, loading a model in each), so callers encode in few, large calls: the CLI raises
the ingest's chunk size under ``--ray`` (``RAY_CHUNK_SIZE`` in ``retrieval/cli/ingest.py``). Ray pays with several machines or GPUs; on one
small machine the local encoder is as fast or faster.

Every failure surfaces as one typed, one-line error: :class:`~unibind.schema.errors.Unavailable` for a cluster
that cannot be reached, an actor that died or a job that failed; the original error's type when it is a typed
error of this project (e.g. ``InvalidInput`` for a model folder that does not load); ``InvalidInput`` when Ray is
not installed or an option is out of range.
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from unibind.indexer.encoders.base import Encoder
from unibind.indexer.runtime.vectors import normalize
from unibind.schema.errors import InvalidInput, UnibindError, Unavailable

log = logging.getLogger(__name__)

__all__ = ["LOCAL", "RayConfig", "RayEncoder", "ray_error"]

LOCAL = "local"  # ``--ray`` with no address: a Ray started on this machine
INSTALL_HINT = "--ray needs Ray: pip install 'unibind[ray]'"
_ADDRESS = re.compile(r"^(auto|ray://[^\s/:]+:\d+|[^\s/:]+:\d+)$")


@dataclass(frozen=True)
class RayConfig:
    """Where and how wide the encoding runs.

    ``address``: None (or ``"local"``) starts a local Ray on this machine; ``"auto"``, ``"HOST:PORT"`` or
    ``"ray://HOST:PORT"`` joins an existing cluster (whose workers must have unibind and the model installed, and
    see the image files). ``concurrency`` actors, each with ``num_cpus`` CPUs (and as many torch threads) and
    ``num_gpus`` GPUs (> 0: the actor encodes on CUDA); ``batch_size`` rows per actor call; ``object_store_mb``
    caps a local Ray's object store (None: Ray's default)."""

    address: str | None = None
    concurrency: int = 2
    num_cpus: float = 1.0
    num_gpus: float = 0.0
    batch_size: int = 256
    object_store_mb: int | None = None

    def __post_init__(self) -> None:
        if self.address is not None and self.address != LOCAL and not _ADDRESS.match(self.address):
            raise InvalidInput(f"--ray {self.address!r}: give no address (a local Ray), auto, HOST:PORT or "
                               "ray://HOST:PORT (put --ray after the corpus FILE, or write --ray=ADDRESS)")
        if isinstance(self.concurrency, bool) or not isinstance(self.concurrency, int) or self.concurrency < 1:
            raise InvalidInput(f"--ray-concurrency must be an integer >= 1, got {self.concurrency!r}")
        if not math.isfinite(self.num_cpus) or self.num_cpus <= 0:
            raise InvalidInput(f"--ray-cpus must be a number > 0 (CPUs per actor), got {self.num_cpus!r}")
        if not math.isfinite(self.num_gpus) or self.num_gpus < 0:
            raise InvalidInput(f"--ray-gpus must be a number >= 0 (GPUs per actor), got {self.num_gpus!r}")
        if self.batch_size < 1:
            raise InvalidInput(f"--batch-size must be >= 1, got {self.batch_size}")
        if self.object_store_mb is not None and self.object_store_mb < 64:
            raise InvalidInput(f"the Ray object store must be at least 64 MB, got {self.object_store_mb}")

    @property
    def local(self) -> bool:
        return self.address is None or self.address == LOCAL

    @property
    def actor_device(self) -> str:
        """The device preference each actor resolves: CUDA when it was given a GPU, else the CPU."""
        return "cuda" if self.num_gpus > 0 else "cpu"


def _ray() -> Any:
    """The ``ray`` module, or InvalidInput saying how to install it."""
    try:
        import ray
        import ray.data  # noqa: F401  (the Data library is a separate extra of ray)
    except ImportError as e:
        raise InvalidInput(INSTALL_HINT) from e
    return ray


def _first_line(text: str) -> str:
    lines = [line.strip() for line in str(text).strip().splitlines() if line.strip()]
    return lines[0] if lines else "no message"


def ensure_ray(config: RayConfig) -> Any:
    """Initialise Ray for ``config`` unless this process already did (a caller's own ``ray.init`` wins); returns
    the module. A cluster that cannot be reached is Unavailable; a pool the cluster cannot hold is InvalidInput
    (Ray would otherwise wait for resources that never come)."""
    ray = _ray()
    if not ray.is_initialized():
        kwargs: dict[str, Any] = {"ignore_reinit_error": True, "include_dashboard": False, "log_to_driver": False,
                                  "logging_level": logging.ERROR}
        if config.local:
            # enough logical CPUs for the whole pool, even where the machine has fewer cores (it just runs slower)
            kwargs["num_cpus"] = max(os.cpu_count() or 1, math.ceil(config.concurrency * config.num_cpus))
            if config.object_store_mb is not None:
                kwargs["object_store_memory"] = config.object_store_mb * 2**20
        else:
            kwargs["address"] = config.address
        try:
            ray.init(**kwargs)
        except Exception as e:  # ConnectionError, TimeoutError, RuntimeError, ... from ray.init
            where = "a local Ray" if config.local else f"the Ray cluster at {config.address}"
            raise Unavailable(f"--ray: cannot start or reach {where}: {_first_line(str(e))}") from e
    resources = ray.cluster_resources()
    for option, per_actor, key in (("--ray-cpus", config.num_cpus, "CPU"), ("--ray-gpus", config.num_gpus, "GPU")):
        need, have = config.concurrency * per_actor, float(resources.get(key, 0.0))
        if need > have + 1e-9:
            raise InvalidInput(f"--ray-concurrency {config.concurrency} x {option} {per_actor:g} needs {need:g} {key}s; "
                               f"the Ray cluster has {have:g}")
    return ray


class _EncodeBatch:
    """Ray Data's callable class: one model per actor, loaded once in ``__init__``; rows ``{"id", "item"}`` in,
    ``{"id", "vector"}`` out (raw encoder outputs; the driver normalises).

    A model that fails to load does not fail the constructor: the error is raised by the first batch instead, so
    the job fails once with the original exception (typed errors keep their type) rather than through Ray's
    actor-restart machinery, which reports it as a dead actor after several pages of traceback."""

    def __init__(self, spec: str, device: str, num_cpus: float, kind: str, encode_batch: int) -> None:
        self.kind, self.encode_batch = kind, encode_batch
        self.encoder: Encoder | None = None
        self.error: BaseException | None = None
        try:
            import torch

            from unibind.indexer.encoders.factory import build_encoder
            from unibind.indexer.runtime.device import select_device

            torch.set_num_threads(max(1, int(num_cpus)))  # one torch thread per CPU this actor was given
            self.encoder = build_encoder(spec, select_device(device))
        except Exception as e:  # raised with the first batch (see the class docstring)
            self.error = e

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.encoder is None:
            assert self.error is not None
            raise self.error
        items = [str(x) for x in batch["item"]]
        if self.kind == "text":
            vectors = self.encoder.encode_text(items, batch_size=self.encode_batch, progress=False)
        else:
            vectors = self.encoder.encode_images(items, batch_size=self.encode_batch, progress=False)
        return {"id": np.asarray(batch["id"], dtype=np.int64), "vector": np.asarray(vectors, dtype=np.float32)}


_EXCEPTION_LINE = re.compile(r"^([A-Za-z_][\w.]*(?:Error|Exception|Exit|Interrupt)|[a-z_][\w.]*\.[A-Z]\w*): ?(.*)$")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_DIED = ("ActorDiedError", "RayActorError", "ActorUnavailableError", "WorkerCrashedError", "OutOfMemoryError",
         "NodeDiedError", "ObjectLostError", "OwnerDiedError")


def _remote_cause(text: str) -> tuple[str, str] | None:
    """(qualified type, message) of the innermost-reported non-Ray exception in a remote traceback's text: the
    last such ``Type: message`` line (Ray prints the chain oldest first, the user's error after its causes)."""
    found = None
    for line in _ANSI.sub("", text).splitlines():
        m = _EXCEPTION_LINE.match(line)
        if m and not m[1].startswith("ray."):
            found = (m[1], m[2].strip())
    return found


def ray_error(error: BaseException) -> Exception:
    """One typed, one-line error for a failed Ray job, naming Ray and the cause: a typed error of this project
    raised in an actor keeps its type (and message); a missing file stays FileNotFoundError; an actor that died or
    anything else is Unavailable with the first line of the remote error."""
    chain: list[BaseException] = []
    cause: BaseException | None = error
    while cause is not None and all(cause is not c for c in chain):  # Ray's wrappers around the actor's error
        chain.append(cause)
        nested = getattr(cause, "cause", None)  # RayTaskError keeps the remote exception here
        cause = nested if isinstance(nested, BaseException) and all(nested is not c for c in chain) else (
            cause.__cause__ or cause.__context__)
    for c in chain:
        if isinstance(c, UnibindError):
            return type(c)(f"encoding on Ray failed in an actor: {_first_line(str(c))}")
    remote = next((r for r in (_remote_cause(str(c)) for c in chain) if r is not None), None)
    died = any(type(c).__name__ in _DIED for c in chain)
    prefix = "encoding on Ray failed: an encoder actor died" if died else "encoding on Ray failed in an actor"
    if remote is not None:
        qualified, message = remote
        name = qualified.rsplit(".", 1)[-1]
        if qualified.startswith("unibind.schema.errors."):
            from unibind.schema import errors

            kind = getattr(errors, name, None)
            if isinstance(kind, type) and issubclass(kind, UnibindError):
                return kind(f"{prefix}: {_first_line(message)}")
        if name == "FileNotFoundError":
            return FileNotFoundError(f"{prefix}: {_first_line(message)}")
        return Unavailable(f"{prefix}: {name}: {_first_line(message) if message else 'no message'}")
    return Unavailable(f"{prefix}: {type(error).__name__}: {_first_line(_ANSI.sub('', str(error)))}")


def _quiet(ray: Any) -> None:
    """No Ray Data progress bars or per-job INFO lines: the CLI prints its own (``-vv`` shows Ray's)."""
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    if hasattr(context, "print_on_execution_start"):
        context.print_on_execution_start = False
    if not log.isEnabledFor(logging.DEBUG):
        # its failures come back as one typed error from RayEncoder; its own ERROR lines repeat them with pages of
        # traceback
        logging.getLogger("ray.data").setLevel(logging.CRITICAL)


class RayEncoder(Encoder):
    """``probe``'s model, run on Ray Data actors; vectors in input order, unit rows, as ``probe`` would give."""

    distributed = True  # a call is spread over actors: callers give it whole chunks, not slices

    def __init__(self, probe: Encoder, config: RayConfig) -> None:
        _ray()  # not installed: say so before anything else
        self.probe, self.config = probe, config
        self.spec, self.dim, self.device, self.modalities = probe.spec, probe.dim, probe.device, probe.modalities

    @property
    def context_length(self) -> int | None:
        return self.probe.context_length

    def count_tokens(self, text: str) -> int | None:
        return self.probe.count_tokens(text)

    def encode_text(self, texts: Sequence[str], *, batch_size: int = 256, progress: bool | None = None) -> np.ndarray:
        """[N] strings → [N, dim] float32 unit rows, computed on Ray."""
        return self._run("text", [str(t) for t in texts], batch_size)

    def encode_images(self, images: Sequence[Any], *, batch_size: int = 64, progress: bool | None = None) -> np.ndarray:
        """[N] image files → [N, dim] float32 unit rows, computed on Ray (the actors open the files: on a cluster
        they must see the same paths)."""
        if "image" not in self.modalities:
            raise InvalidInput(f"encoder {self.spec} has no image tower (modalities: {', '.join(sorted(self.modalities))})")
        paths = []
        for image in images:
            if not isinstance(image, (str, os.PathLike)):
                raise InvalidInput("encoding on Ray takes image files, not images in memory")
            paths.append(str(Path(image).resolve()))
        return self._run("image", paths, batch_size)

    def _text_batch(self, texts: Sequence[str]) -> np.ndarray:
        return self.encode_text(texts)

    def _run(self, kind: str, items: list[str], encode_batch: int) -> np.ndarray:
        """One Ray Data job over ``items``; the vectors joined back by id."""
        n = len(items)
        if n == 0:
            return np.empty((0, self.dim), dtype=np.float32)
        ray = ensure_ray(self.config)
        c = self.config
        _quiet(ray)
        batch = min(c.batch_size, n)
        blocks = min(-(-n // batch), 1000)  # a block per batch: the actors pick them up in whatever order
        actors = min(c.concurrency, blocks)  # no actor (and no model load) that would get nothing to encode
        log.info("encoding %d %s inputs on Ray: %d actors x (%g CPU, %g GPU), batches of %d", n, kind, actors,
                 c.num_cpus, c.num_gpus, batch)
        out = np.empty((n, self.dim), dtype=np.float32)
        seen = np.zeros(n, dtype=bool)
        try:
            ds = ray.data.from_items([{"id": i, "item": item} for i, item in enumerate(items)],
                                     override_num_blocks=blocks)
            ds = ds.map_batches(
                _EncodeBatch,
                fn_constructor_kwargs={"spec": self.spec, "device": c.actor_device, "num_cpus": c.num_cpus,
                                       "kind": kind, "encode_batch": max(1, min(encode_batch, batch))},
                batch_size=batch, batch_format="numpy", compute=ray.data.ActorPoolStrategy(size=actors),
                num_cpus=c.num_cpus, num_gpus=c.num_gpus,
            )
            for part in ds.iter_batches(batch_size=None, batch_format="numpy"):
                ids = np.asarray(part["id"], dtype=np.int64)
                vectors = np.asarray(part["vector"], dtype=np.float32).reshape(len(ids), -1)
                if vectors.shape[1] != self.dim:
                    raise Unavailable(f"encoding on Ray failed: an actor returned {vectors.shape[1]}-dimensional "
                                      f"vectors, {self.spec} gives {self.dim}")
                if ids.size and (ids.min() < 0 or ids.max() >= n):
                    raise Unavailable(f"encoding on Ray failed: an actor returned an unknown id {int(ids.max())}")
                if seen[ids].any() or np.unique(ids).size != ids.size:
                    raise Unavailable("encoding on Ray failed: an input came back twice")
                seen[ids] = True
                out[ids] = vectors
        except UnibindError:
            raise
        except Exception as e:  # RayTaskError, ActorDiedError, ...: one line, typed
            raise ray_error(e) from e
        if not seen.all():
            raise Unavailable(f"encoding on Ray failed: {int((~seen).sum())} of {n} inputs did not come back")
        return normalize(out)
