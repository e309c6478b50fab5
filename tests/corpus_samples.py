"""Small real-language corpora for ingestion tests."""

from __future__ import annotations

import json
from pathlib import Path

ANIMALS = {
    "tench": [
        "A tench is a freshwater fish with olive-green scales.",
        "The tench has small red eyes and a thick, slimy body.",
        "Tench live in slow rivers and weedy lakes.",
        "A stout fish with tiny scales and rounded fins.",
    ],
    "goldfish": [
        "A goldfish is a small orange fish kept in bowls.",
        "Goldfish have shiny golden scales and flowing tails.",
        "A pet fish swimming in a glass aquarium.",
    ],
    "tabby cat": [
        "A tabby cat has a striped coat with an M on its forehead.",
        "A small furry pet with whiskers, purring on a sofa.",
        "The cat's fur shows dark stripes on a grey background.",
    ],
}

VEHICLES = {
    "fire truck": [
        "A fire truck is a large red vehicle with ladders and hoses.",
        "An emergency vehicle with flashing lights and a siren.",
    ],
    "bicycle": [
        "A bicycle has two wheels, pedals and a chain.",
        "A light frame with handlebars and a saddle.",
        "The bike leans against a wall, its spokes glinting.",
    ],
}


def write_json(path: Path, table: dict[str, list[str]]) -> Path:
    path.write_text(json.dumps(table, indent=1), encoding="utf-8")
    return path


def write_jsonl(path: Path, table: dict[str, list[str]]) -> Path:
    lines = [json.dumps({"category": c, "text": t, "n": i}) for c, texts in table.items() for i, t in enumerate(texts)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
