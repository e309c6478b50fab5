"""Test helpers for the LLM backends (not a test file): a tiny random Llama saved to a folder, a real
``transformers serve`` OpenAI-compatible server in a subprocess, and a stand-in that answers every POST
with HTTP 429 (counting them).

Nothing touches the network: the server runs with ``HF_HUB_OFFLINE=1`` and loads the tiny model from the
folder named as the request's ``model``.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import IO

TINY_WORDS = ("a photo of the bird dog cat with wings fur tail eye red blue green small large white black "
              "stripes feathers beak legs long short round water tree sky grass looks like has is . , - 1 2 3").split()


def make_tiny_llm(path: Path) -> Path:
    """Save a tiny, seeded, random Llama and a byte-level BPE tokenizer with a chat template to ``path``.

    The tokenizer is a real byte-level BPE (as GPT-2's and Llama 3's), trained here on :data:`TINY_WORDS`, so
    servers can apply stop strings with it. The model's output weights are zero except for whole words of
    :data:`TINY_WORDS` (scaled up), ".", "," and the end token (scaled less), so sampled texts are mostly those
    words with a full stop now and then; it samples by default. It has no ``token_type_ids``."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    out = Path(path).resolve()
    out.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=1000, special_tokens=["<unk>", "<s>", "</s>", "<pad>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator([" " + " ".join(TINY_WORDS)] * 20, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>",
                                   pad_token="<pad>", model_input_names=["input_ids", "attention_mask"])
    fast.chat_template = ("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
                          "{% if add_generation_prompt %}assistant: {% endif %}")
    fast.save_pretrained(out)
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(fast), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=256,
                      bos_token_id=1, eos_token_id=2, pad_token_id=3)
    model = LlamaForCausalLM(cfg)
    vocab = fast.get_vocab()
    words = set(TINY_WORDS)

    def spoken(token: str) -> bool:  # " word", ".", "," or the end token
        text = fast.convert_tokens_to_string([token])
        return (text.startswith(" ") and text.strip() in words) or text in (".", ",") or token == "</s>"

    keep = torch.zeros(len(fast), dtype=torch.bool)
    keep[[i for t, i in vocab.items() if spoken(t)]] = True
    punct = [i for t, i in vocab.items() if fast.convert_tokens_to_string([t]) in (".", ",")] + [2]
    with torch.no_grad():
        model.lm_head.weight[~keep] = 0.0
        model.lm_head.weight[keep] *= 20.0
        model.lm_head.weight[punct] *= 0.6
        model.model.norm.weight.fill_(4.0)
    model.generation_config.do_sample = True
    model.save_pretrained(out)
    return out


def free_port() -> int:
    """A port nothing listens on right now (bound to 0, read back, released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])



def stop_process(popen: subprocess.Popen[bytes]) -> None:
    """Terminate a child process and wait for it; kill it when it does not exit within 15 s."""
    if popen.poll() is None:
        popen.terminate()
        try:
            popen.wait(timeout=15)
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait(timeout=15)

class TransformersServer:
    """``transformers serve`` on 127.0.0.1 in a subprocess; ``stop()`` and ``start()`` keep the port."""

    def __init__(self, port: int | None = None, *, ready_timeout: float = 90.0) -> None:
        self.port = port or free_port()
        self.ready_timeout = ready_timeout
        self.workdir = Path(tempfile.mkdtemp(prefix="unibind-serve-"))
        self.log_path = self.workdir / "serve.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> TransformersServer:
        """Start the server (again) and wait until ``GET /health`` answers."""
        if self._proc is not None and self._proc.poll() is None:
            return self
        script = Path(sys.executable).with_name("transformers")
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "CUDA_VISIBLE_DEVICES": ""}
        self._log = open(self.log_path, "ab")
        self._proc = subprocess.Popen([str(script), "serve", "--host", "127.0.0.1", "--port", str(self.port)],
                                      cwd=self.workdir, env=env, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"transformers serve exited with {self._proc.returncode}: {self.log_tail()}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=1) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"transformers serve did not answer /health in {self.ready_timeout} s: {self.log_tail()}")

    def stop(self) -> None:
        """Stop the server and wait for it to exit (the port is free afterwards)."""
        if self._proc is not None:
            stop_process(self._proc)
            self._proc = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_tail(self, n: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def __enter__(self) -> TransformersServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


class StandInServer:
    """A stdlib HTTP server standing in for an OpenAI-compatible one (not one of our components): ``GET …/models``
    lists ``models``, every POST is counted in ``posts`` and answered by :meth:`answer` (status, JSON body)."""

    models: list[str] = []

    def __init__(self) -> None:
        owner = self
        self.posts = 0
        self._lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            def _send(self, status: int, body: dict[str, object]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                if self.path.rstrip("/").endswith("/models"):
                    self._send(200, {"object": "list", "data": [{"id": m, "object": "model"} for m in owner.models]})
                else:
                    self._send(404, {"error": {"message": "not found"}})

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with owner._lock:
                    owner.posts += 1
                self._send(*owner.answer())

            def log_message(self, format: str, *args: object) -> None:  # quiet
                pass

        class QuietServer(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: object, client_address: object) -> None:  # a client that hung up
                pass

        self._server = QuietServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def answer(self) -> tuple[int, dict[str, object]]:
        raise NotImplementedError

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def __enter__(self) -> StandInServer:
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._server.shutdown()
        self._server.server_close()


class RateLimitServer(StandInServer):
    """Answers every POST with 429 and lists no model: a rate-limit storm that never ends."""

    def answer(self) -> tuple[int, dict[str, object]]:
        return 429, {"error": {"message": "rate limited", "type": "rate_limit"}}


class SlowServer(StandInServer):
    """Lists the model ``slow`` and holds every chat request until the server is closed (or ``delay`` seconds have
    passed) before answering: requests in flight when the user presses Ctrl-C."""

    models = ["slow"]

    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay = delay
        self._closing = threading.Event()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._closing.set()  # release the held requests, so no handler outlives the server
        super().__exit__(exc_type, exc, tb)

    def answer(self) -> tuple[int, dict[str, object]]:
        self._closing.wait(self.delay)
        return 200, {"id": "x", "object": "chat.completion", "created": 0, "model": "slow", "choices": [
            {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "A slow owl."}}]}
