"""``--ray [ADDRESS]``, ``--ray-concurrency``, ``--ray-cpus``, ``--ray-gpus``: encoding on Ray, for the commands
that encode many inputs (``unibind ingest``, ``unibind gallery add``). Only encoding runs on Ray; the command's
own process stays the one writer that publishes."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from unibind.indexer.encoders.base import Encoder
    from unibind.indexer.encoders.ray_encoder import RayConfig

LOCAL = "local"  # --ray with no address (the same word as unibind.indexer.encoders.ray_encoder.LOCAL)


def add_ray_options(sp: argparse.ArgumentParser, what: str) -> None:
    """The four options; ``what`` says what is encoded on Ray (for the help)."""
    sp.add_argument("--ray", nargs="?", const=LOCAL, metavar="ADDRESS",
                    help=f"encode {what} on Ray Data actors (pip install 'unibind[ray]'): no ADDRESS starts a local "
                         "Ray; auto, HOST:PORT or ray://HOST:PORT joins a cluster. Pays with several machines or "
                         "GPUs, not on one small machine")
    sp.add_argument("--ray-concurrency", type=int, default=2, metavar="N",
                    help="with --ray: encoder actors, one model each (default 2)")
    sp.add_argument("--ray-cpus", type=float, default=1.0, metavar="X",
                    help="with --ray: CPUs per actor, and its torch threads (default 1)")
    sp.add_argument("--ray-gpus", type=float, default=0.0, metavar="X",
                    help="with --ray: GPUs per actor; > 0 encodes on CUDA (default 0)")


def ray_config(args: argparse.Namespace, *, batch_size: int) -> RayConfig | None:
    """The Ray settings the options ask for, or None without ``--ray`` (InvalidInput for a Ray option without
    ``--ray``, or a value out of range)."""
    from unibind.schema.errors import InvalidInput

    if args.ray is None:
        given = [flag for flag, value, default in (("--ray-concurrency", args.ray_concurrency, 2),
                                                   ("--ray-cpus", args.ray_cpus, 1.0), ("--ray-gpus", args.ray_gpus, 0.0))
                 if value != default]
        if given:
            raise InvalidInput(f"{', '.join(given)} apply only with --ray")
        return None
    from unibind.indexer.encoders.ray_encoder import RayConfig

    return RayConfig(address=None if args.ray == LOCAL else args.ray, concurrency=args.ray_concurrency,
                     num_cpus=args.ray_cpus, num_gpus=args.ray_gpus, batch_size=batch_size)


def on_ray(encoder: Encoder, config: RayConfig) -> Encoder:
    """``encoder``'s model run on Ray (``encoder`` itself stays in this process for its dimension and spec)."""
    from unibind.indexer.encoders.ray_encoder import RayEncoder

    return RayEncoder(encoder, config)
