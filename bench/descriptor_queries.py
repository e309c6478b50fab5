"""Turn a descriptors file into a labelled queries file for ``unibind eval recognition``.

    .venv/bin/python bench/descriptor_queries.py DESCRIPTORS.json QUERIES.jsonl [--join ", "]

DESCRIPTORS.json is ``{class name: [short descriptors]}``, the format of "Visual Classification via
Description from Large Language Models" (Menon & Vondrick, ICLR 2023, ``descriptors_imagenet.json``):
descriptors written by another LLM and prompt than the corpus, which never name their class. Each class
becomes one query, its descriptors joined (``"a freshwater fish, olive green or brown in color, ..."``),
labelled with the class name. Classes the knowledge base does not have are left out with a count when
``--classes-from builtin`` names the builtin corpus (the 998 CuPL ImageNet classes).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

log = logging.getLogger("descriptor_queries")


def read_descriptors(path: Path) -> dict[str, list[str]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SystemExit(f"{path}: file not found") from None
    except json.JSONDecodeError as e:
        raise SystemExit(f"{path}:{e.lineno}: invalid JSON ({e.msg})") from None
    if not isinstance(data, dict) or not data:
        raise SystemExit(f"{path}: expected a JSON object {{class name: [descriptors]}}")
    for name, items in data.items():
        if not isinstance(items, list) or not items or not all(isinstance(s, str) and s.strip() for s in items):
            raise SystemExit(f"{path}: class {name!r}: descriptors must be a non-empty list of non-empty strings")
    return data


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("descriptors", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--join", default=", ", help='separator between a class\'s descriptors (default ", ")')
    p.add_argument("--classes-from", choices=["builtin"], help="keep only the classes of the builtin corpus")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    data = read_descriptors(args.descriptors)
    if args.classes_from == "builtin":
        from unibind.indexer.readers.builtin import cupl_classes

        known = set(cupl_classes())
        missing = [n for n in data if n not in known]
        if missing:
            log.info("%d classes are not builtin classes, left out: %s", len(missing), ", ".join(missing))
        data = {n: v for n, v in data.items() if n in known}
    lines = [json.dumps({"text": args.join.join(s.strip() for s in items), "label": name}) for name, items in data.items()]
    args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    log.info("%d queries written to %s", len(lines), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
