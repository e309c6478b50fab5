"""``unibind kb describe``: per-sample descriptions (the paper's multimodal data descriptions) as head-training pairs.

Images are sent to a vision LLM as data URLs, through the same response cache, retries and provenance as
``kb generate``; the answers become the pairs JSONL that ``unibind head train`` reads. Feature modalities (audio,
point clouds, ...) whose raw data a vision model cannot read bring captions made elsewhere (``--captions``),
validated here into the same pairs format.
"""

from __future__ import annotations

import base64
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from unibind.indexer.knowledge.cache import ResponseCache
from unibind.indexer.knowledge.cleaning import is_refusal, split_response
from unibind.indexer.knowledge.generate import GenerateReport, ask
from unibind.indexer.knowledge.prompts import request_seed
from unibind.indexer.knowledge.request import LLM, Request
from unibind.indexer.readers.jsonio import json_kind, quote, read_jsonl
from unibind.indexer.readers.text import unstorable
from unibind.schema.errors import InvalidInput

log = logging.getLogger(__name__)

IMAGE_TYPES = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png", ".webp": "image/webp",
               ".gif": "image/gif", ".bmp": "image/bmp"}
DESCRIBE_PROMPT = ("Describe this image in one or two sentences: what it shows, its parts, colours, "
                   "textures and setting.")
CAPTION_KEYS = ("row", "caption", "label", "meta")
IMAGES_PER_STEP = 256  # images read, asked about and cached per step


def list_images(inputs: Sequence[str]) -> list[Path]:
    """Folders (searched recursively, sorted) and files → image paths; anything else is an error naming it."""
    out: list[Path] = []
    for raw in inputs:
        p = Path(raw)
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_TYPES)
            if not found:
                raise InvalidInput(f"--images {p}: the folder holds no images ({', '.join(sorted(IMAGE_TYPES))})")
            out += found
        elif p.is_file():
            if p.suffix.lower() not in IMAGE_TYPES:
                raise InvalidInput(f"--images {p}: not an image file name ({', '.join(sorted(IMAGE_TYPES))})")
            out.append(p)
        else:
            raise FileNotFoundError(f"--images: no such file or folder: {p}")
    return list(dict.fromkeys(out))


def check_image(path: Path) -> None:
    """A file that is not a readable image is an error naming it."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.verify()
    except (UnidentifiedImageError, OSError) as e:
        raise InvalidInput(f"{path}: not a readable image ({e})") from e


def data_url(path: Path) -> str:
    """The image as a ``data:`` URL (checked to be a readable image)."""
    check_image(path)
    return f"data:{IMAGE_TYPES[path.suffix.lower()]};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"


def _clean(text: str) -> str | None:
    """One answer → its description, or None when it is empty or a refusal."""
    text = " ".join(text.split()).strip().strip('"“”')
    return None if not text or is_refusal(text) else text


def describe_images(llm: LLM, images: Sequence[Path], cache: ResponseCache, out: Path, *, prompt: str = DESCRIBE_PROMPT,
                    samples: int = 1, temperature: float = 0.2, max_tokens: int = 120, seed: int = 0,
                    labels_from_folders: bool = False, progress: bool | None = None) -> tuple[list[dict[str, Any]], GenerateReport]:
    """A pairs record per image with at least one usable answer: ``input`` relative to ``out``'s folder,
    ``description`` (or ``descriptions`` when ``samples`` > 1), ``label`` (the parent folder's name when
    ``labels_from_folders``) and ``meta`` (provenance)."""
    if samples < 1:
        raise InvalidInput(f"--samples must be >= 1, got {samples}")
    if not llm.uses_prompts and not labels_from_folders:
        raise InvalidInput(f"--llm {llm.spec} writes about a category, not an image: pass --labels-from-folders "
                           f"(each image's folder names its category)")
    for path in images:  # every image readable before anything is asked
        check_image(path)
    report = GenerateReport(llm=llm.describe(), prompts="describe", categories=0, asked=llm.uses_prompts)
    base = out.resolve().parent
    records: list[dict[str, Any]] = []
    for c0 in range(0, len(images), IMAGES_PER_STEP):  # a step's images are held in memory as data URLs, not all
        chunk = images[c0 : c0 + IMAGES_PER_STEP]
        if llm.uses_prompts:
            requests = [Request(prompt=prompt, images=(url,), temperature=temperature, max_tokens=max_tokens,
                                seed=request_seed(seed, path.name, prompt, s))
                        for path in chunk for url in (data_url(path),) for s in range(samples)]
        else:  # the waffle control: random words about the image's category, the image itself unread
            requests = [Request(prompt="", category=path.resolve().parent.name,
                                seed=request_seed(seed, path.name, "", s)) for path in chunk for s in range(samples)]
        texts = ask(llm, cache, requests, report, f"kb describe {c0 + 1}-{c0 + len(chunk)} of {len(images)}", progress)
        for i, path in enumerate(chunk):
            answers = [t for t in (_clean(x) for x in texts[i * samples : (i + 1) * samples]) if t]
            if not answers:
                log.warning("%s: no usable description (empty or refused); left out", path)
                continue
            row: dict[str, Any] = {"input": os.path.relpath(path.resolve(), base)}
            row.update({"description": answers[0]} if len(answers) == 1 else {"descriptions": answers})
            if labels_from_folders:
                row["label"] = path.resolve().parent.name
            used = {"prompt": prompt, "temperature": temperature} if llm.uses_prompts else {}  # what it used only
            row["meta"] = {"model": llm.spec, **used, "seed": seed, "samples": samples}
            records.append(row)
    report.records = len(records)
    if not records:
        raise InvalidInput("no image got a usable description; nothing written")
    return records, report


def captions_to_pairs(path: str | os.PathLike[str], n_rows: int | None = None) -> list[dict[str, Any]]:
    """A captions JSONL made elsewhere (``{"row": N, "caption": "...", "label": "..."}`` per line, ``row`` the
    feature row it describes) → pairs records (``{"input": N, "description": ..., "label": ...}``), validated
    line by line; errors name the file, the line, the field and the rule."""
    label = os.fspath(path)
    out: list[dict[str, Any]] = []
    dropped = 0
    for line, obj in read_jsonl(label, what="captions", error=InvalidInput):
        loc = f"{label}:{line}"
        if not isinstance(obj, dict):
            raise InvalidInput(f'{loc}: each line must be an object {{"row": N, "caption": "..."}} (got {json_kind(obj)})')
        unknown = [k for k in obj if k not in CAPTION_KEYS]
        if unknown:
            raise InvalidInput(f"{loc}: unknown field(s) {', '.join(quote(k) for k in unknown)}; allowed: "
                               f"{', '.join(CAPTION_KEYS)}")
        row = obj.get("row")
        if isinstance(row, bool) or not isinstance(row, int) or row < 0 or (n_rows is not None and row >= n_rows):
            bound = f" < {n_rows}" if n_rows is not None else ""
            raise InvalidInput(f'{loc}: field "row" must be an integer >= 0{bound} (got {json.dumps(row)})')
        caption = obj.get("caption")
        if not isinstance(caption, str) or not caption.strip() or unstorable(caption):
            raise InvalidInput(f'{loc}: field "caption" must be a non-empty string (got {json_kind(caption)})')
        description = clean_caption(caption)
        if description is None:  # a refusal, or nothing left: what `kb generate` would drop
            log.warning("%s: caption dropped (a refusal or no description): %s", loc, caption.strip()[:80])
            dropped += 1
            continue
        rec: dict[str, Any] = {"input": row, "description": description}
        if "label" in obj:
            if not isinstance(obj["label"], str) or not obj["label"].strip():
                raise InvalidInput(f'{loc}: field "label" must be a non-empty string (got {json_kind(obj["label"])})')
            rec["label"] = obj["label"].strip()
        if "meta" in obj:
            if not isinstance(obj["meta"], dict):
                raise InvalidInput(f'{loc}: field "meta" must be an object (got {json_kind(obj["meta"])})')
            rec["meta"] = obj["meta"]
        out.append(rec)
    if not out:
        raise InvalidInput(f"{label}: the file has no captions{' left after cleaning' if dropped else ''}")
    return out


def clean_caption(caption: str) -> str | None:
    """A caption as ``kb generate`` cleans an answer: bullets, numbering, quotes and emphasis removed, refusal and
    meta sentences ("As an AI language model ...", "Here are ...") dropped, the rest joined; None when nothing
    is left."""
    kept = [s for s in split_response(caption, "sentences", "") if not is_refusal(s)]
    return " ".join(kept) or None
