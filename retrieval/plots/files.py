"""Writing a picture: atomically (a temporary file renamed over the target), so a crash or an error never leaves a
half-written PNG, and nothing at all when the picture could not be made."""

from __future__ import annotations

import logging
import os
import struct
from pathlib import Path

from unibind.indexer.index.files import write_atomically
from unibind.schema.errors import InvalidInput

log = logging.getLogger(__name__)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) of PNG bytes, from the IHDR chunk."""
    if not data.startswith(PNG_SIGNATURE) or data[12:16] != b"IHDR":
        raise ValueError("not PNG data")
    width, height = struct.unpack(">II", data[16:24])
    return int(width), int(height)


def check_out(path: str | Path) -> Path:
    """The output path, checked before any work: not a folder, and a ``.png`` name."""
    out = Path(path)
    if out.is_dir():
        raise InvalidInput(f"--out {str(out)!r} is a folder: name the PNG file to write")
    if out.suffix.lower() != ".png":
        raise InvalidInput(f"--out {str(out)!r} must name a .png file")
    return out


def write_png(path: str | Path, data: bytes) -> tuple[int, int]:
    """Write ``data`` (PNG bytes) to ``path`` atomically; returns the picture's (width, height)."""
    size = png_size(data)
    out = check_out(path)
    mask = os.umask(0o022)  # read the umask (it can only be read by setting it) ...
    os.umask(mask)  # ... and put it back

    def write(tmp: Path) -> None:
        tmp.write_bytes(data)
        os.chmod(tmp, 0o666 & ~mask)  # a picture is an ordinary file, not the private temporary file's 0600

    write_atomically(out, write)
    log.info("wrote %s (%dx%d pixels, %d bytes)", out, *size, len(data))
    return size
