"""``hf:<path-or-hub-id>``: a local transformers causal LM, run in this process on the selected device.

Each request is generated alone with ``torch.manual_seed(request.seed)`` first, so a request's text depends
only on the request (not on what ran before it). The identity includes a fingerprint of the weight files of a
local folder, so retrained weights under the same path do not reuse cached texts.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from unibind.indexer.knowledge.openai_backend import cut_at_stop
from unibind.indexer.knowledge.request import LLM, Request
from unibind.indexer.runtime.device import Device
from unibind.schema.errors import InvalidInput, NotFound, Unavailable

log = logging.getLogger(__name__)

__all__ = ["HFBackend", "weights_fingerprint"]

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".gguf", ".h5", ".msgpack")
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")  # "name" or "owner/name"


def weights_fingerprint(folder: Path) -> str:
    """A short sha256 of the (name, size, mtime) of the weight files under ``folder``: it changes when they do."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.name.endswith(WEIGHT_SUFFIXES)):
        st = path.stat()
        digest.update(f"{path.relative_to(folder).as_posix()}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:12]


class HFBackend(LLM):
    """A transformers ``AutoModelForCausalLM`` (+ its tokenizer) from a local folder or a hub id. Text only."""

    def __init__(self, model: str, device: Device, *, load: bool = True) -> None:
        name = (model or "").strip()
        if not name:
            raise InvalidInput("hf backend: the model path is empty: use hf:<path-or-hub-id>")
        folder = Path(name).expanduser()
        self.local = folder.is_dir()
        if self.local:
            name = str(folder.resolve())
        elif not HUB_ID.match(name) or name.startswith((".", "~")):
            raise NotFound(f"hf model folder not found: {name} (give an existing folder or a hub id like "
                           "owner/name)")
        self.name = name
        self.spec = f"hf:{name}"
        self.device = device
        self._identity = f"{self.spec}@{weights_fingerprint(Path(name))}" if self.local else self.spec
        # load=False: the spec, identity and description only (a dry run asks nothing of the model)
        self.tokenizer, self.model = self._load() if load else (None, None)

    def _load(self) -> tuple[Any, Any]:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from unibind.indexer.encoders.hub import offline_unless_reachable

        try:
            with offline_unless_reachable():
                tokenizer = AutoTokenizer.from_pretrained(self.name)
                model = AutoModelForCausalLM.from_pretrained(self.name, dtype="auto")
        except OSError as e:
            if self.local:
                raise InvalidInput(f"cannot load the hf model {self.name}: {_first_line(e)}") from None
            raise NotFound(f"hf model {self.name!r} is neither a local folder nor in the hub cache "
                           f"({_first_line(e)}): give a folder or download it first") from None
        except Exception as e:  # a config transformers does not know, broken weights, a non-causal model
            raise InvalidInput(f"cannot load the hf model {self.name} as a causal LM: {_first_line(e)}") from None
        model.to(self.device.torch).eval()
        log.info("loaded %s on %s", self.spec, self.device.torch)
        return tokenizer, model

    @property
    def identity(self) -> str:
        return self._identity

    def describe(self) -> str:
        return f"{self.spec} on {self.device.torch}"

    def _inputs(self, request: Request) -> dict[str, Any]:
        tok = self.tokenizer
        if getattr(tok, "chat_template", None):
            messages = ([{"role": "system", "content": request.system}] if request.system else []) + [
                {"role": "user", "content": request.prompt}]
            encoded = tok.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                              return_dict=True)
        else:
            text = f"{request.system}\n\n{request.prompt}" if request.system else request.prompt
            encoded = tok(text, return_tensors="pt")
        return {k: v.to(self.device.torch) for k, v in encoded.items() if k in ("input_ids", "attention_mask")}

    def generate(self, request: Request) -> str:
        """One request's text: seeded, only the new tokens, stripped, cut before the first stop string."""
        import torch

        tok = self.tokenizer
        inputs = self._inputs(request)
        sampling = request.temperature > 0
        kwargs: dict[str, Any] = {"do_sample": sampling, "max_new_tokens": request.max_tokens,
                                  "pad_token_id": tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id}
        if sampling:
            kwargs["temperature"] = request.temperature
        torch.manual_seed(request.seed)
        try:
            with torch.inference_mode():
                output = self.model.generate(**inputs, **kwargs)
        except torch.cuda.OutOfMemoryError:
            raise Unavailable(f"{self.spec} ran out of GPU memory on {self.device.torch}: lower max_tokens, use a "
                              "smaller model or --device cpu") from None
        new_tokens = output[0, inputs["input_ids"].shape[1]:]
        text = tok.decode(new_tokens, skip_special_tokens=True).strip()
        return cut_at_stop(text, request.stop).strip()

    def run(self, requests: Sequence[Request], on_result: Callable[[int, str], None]) -> None:
        """Answer each request in order, in this thread; requests with images are refused before any runs."""
        for i, request in enumerate(requests):
            if request.images:
                raise InvalidInput(f"{self.spec}: request {i} has images, but hf backends are text-only: use "
                                   "openai:<vision model> for images")
        if self.model is None:
            self.tokenizer, self.model = self._load()
        for i, request in enumerate(requests):
            on_result(i, self.generate(request))

    def close(self) -> None:
        import torch

        self.model = None
        if self.device.is_cuda:
            torch.cuda.empty_cache()


def _first_line(e: BaseException) -> str:
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    return lines[0][:300] if lines else type(e).__name__
