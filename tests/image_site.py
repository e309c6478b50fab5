"""A served knowledge base with an image gallery, for the browsing routes and the web page: a tiny open_clip
space (its image tower puts images in the space zero-shot), the ANIMALS corpus with its centres, and a gallery
of generated PNGs with metadata; ``live_server`` runs an app under a real uvicorn on a free loopback port."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import uvicorn
from fastapi import FastAPI
from PIL import Image, ImageDraw

from tests.corpus_samples import ANIMALS, write_json
from tests.test_service import cli
from tests.tiny_models import make_tiny_open_clip

COLOURS = {"red": (210, 40, 40), "green": (40, 170, 60), "blue": (40, 70, 200)}
SHAPES = ("disc", "square")


@dataclass(frozen=True)
class ImageSite:
    url: str  # the database
    home: Path
    spec: str  # the space's encoder
    images: list[Path]  # in gallery order: item ids 1..N
    metas: list[dict[str, object]]


def draw(path: Path, colour: tuple[int, int, int], shape: str, size: tuple[int, int] = (64, 48)) -> Path:
    image = Image.new("RGB", size, (245, 245, 240))
    box = (8, 6, size[0] - 8, size[1] - 6)
    (ImageDraw.Draw(image).ellipse if shape == "disc" else ImageDraw.Draw(image).rectangle)(box, fill=colour)
    image.save(path)
    return path


def build_image_site(root: Path) -> ImageSite:
    spec = make_tiny_open_clip(root / "model")
    url, home = f"sqlite:///{root / 'site.db'}", root / "home"
    cli(url, home, "ingest", str(write_json(root / "animals.json", ANIMALS)), "--name", "kb", "--encoder", spec)
    folder = root / "images"
    folder.mkdir()
    images, metas = [], []
    for i, (name, rgb) in enumerate(COLOURS.items()):
        for j, shape in enumerate(SHAPES):
            images.append(draw(folder / f"{name}-{shape}.png", rgb, shape))
            metas.append({"label": name, "shape": shape, "split": "test" if j else "train", "n": 2 * i + j})
    meta = root / "images.jsonl"
    meta.write_text("".join(json.dumps(m) + "\n" for m in metas))
    cli(url, home, "gallery", "add", "--modality", "image", "--files", *map(str, images), "--meta", str(meta))
    cli(url, home, "centres", "build")
    return ImageSite(url, home, spec, images, [{k: v for k, v in m.items() if k != "label"} for m in metas])


@contextmanager
def live_server(app: FastAPI, timeout: float = 60.0) -> Iterator[str]:
    """``app`` served by uvicorn in a thread on 127.0.0.1 (a free port); yields its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True, name="uvicorn-test")
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout)
        sock.close()
