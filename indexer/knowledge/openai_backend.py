"""``openai:<model>``: any OpenAI-compatible chat server (OpenAI itself, vLLM, ``transformers serve``, llama.cpp,
Ollama, ...) through the official ``openai`` client.

Requests run on a small thread pool; their results come back to the calling thread as they finish, so the
caller can save each one at once. Retries are done here, not by the client, so each one is counted and logged:
rate limits (HTTP 429), server errors (5xx), lost connections and timeouts are retried with exponential
backoff; any other client error is the user's to fix and fails at once with a typed error.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from unibind.indexer.knowledge.request import LLM, Request
from unibind.schema.errors import Busy, InvalidInput, NotFound, Unavailable

log = logging.getLogger(__name__)

__all__ = ["OpenAIBackend", "OpenAIConfig", "cut_at_stop"]

PLACEHOLDER_KEY = "unused"  # local servers accept any key, but the client refuses to start without one
REACH_TIMEOUT_S = 5.0  # the reachability check's own limit: a dead server is reported in seconds
MAX_MESSAGE_CHARS = 300  # a server's error message, cut to one short line


@dataclass(frozen=True)
class OpenAIConfig:
    """Where the server is and how hard to push it.

    ``base_url`` None: the client's default (``$OPENAI_BASE_URL``, else OpenAI's API). ``api_key`` None:
    ``$OPENAI_API_KEY``, else a placeholder for local servers that need none (``$UNIBIND_LLM_API_KEY`` is read by
    the settings, like every ``UNIBIND_*`` variable, and arrives here as ``api_key``). ``timeout`` is per request;
    ``retries`` counts the tries after the first; the first wait is ``backoff`` seconds, doubling, at most
    ``backoff_max``.
    """

    base_url: str | None = None
    api_key: str | None = None
    concurrency: int = 4
    timeout: float = 60.0
    retries: int = 5
    backoff: float = 0.5
    backoff_max: float = 20.0

    def __post_init__(self) -> None:
        if self.base_url is not None and not self.base_url.strip().lower().startswith(("http://", "https://")):
            raise InvalidInput(f"LLM base_url {self.base_url!r} must start with http:// or https:// "
                               "(e.g. http://127.0.0.1:8000/v1)")
        if isinstance(self.concurrency, bool) or not isinstance(self.concurrency, int) or self.concurrency < 1:
            raise InvalidInput(f"LLM concurrency must be an integer >= 1, got {self.concurrency!r}")
        if isinstance(self.retries, bool) or not isinstance(self.retries, int) or self.retries < 0:
            raise InvalidInput(f"LLM retries must be an integer >= 0, got {self.retries!r}")
        for name in ("timeout", "backoff", "backoff_max"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 or value == float("inf"):
                raise InvalidInput(f"LLM {name} must be a positive number of seconds, got {value!r}")
        if self.backoff_max < self.backoff:
            raise InvalidInput(f"LLM backoff_max ({self.backoff_max}) must not be below backoff ({self.backoff})")

    def resolved_api_key(self) -> str:
        return self.api_key or os.environ.get("OPENAI_API_KEY") or PLACEHOLDER_KEY

    def wait_before(self, attempt: int) -> float:
        """Seconds to wait before try ``attempt + 1`` (``attempt`` >= 1 tries have failed)."""
        return min(self.backoff * 2 ** (attempt - 1), self.backoff_max)


def cut_at_stop(text: str, stop: Sequence[str]) -> str:
    """``text`` up to the first occurrence of any stop string (servers that ignore ``stop`` leave it in)."""
    cuts = [i for i in (text.find(s) for s in stop if s) if i >= 0]
    return text[:min(cuts)] if cuts else text


def _one_line(text: object) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= MAX_MESSAGE_CHARS else line[:MAX_MESSAGE_CHARS - 3] + "..."


def _reason(e: BaseException) -> str:
    """The underlying cause of a connection error ("Connection refused"), not just "Connection error."."""
    cause = e.__cause__ or e.__context__
    return _one_line(f"{e} ({cause})" if cause is not None and str(cause) else e)


def _messages(request: Request) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    if request.system:
        messages.append({"role": "system", "content": request.system})
    if request.images:
        content: Any = [{"type": "text", "text": request.prompt}] + [
            {"type": "image_url", "image_url": {"url": url}} for url in request.images]
    else:
        content = request.prompt
    messages.append({"role": "user", "content": content})
    return messages


class _Stopped(Exception):
    """Another request failed for good: this one gives up without trying again."""


class OpenAIBackend(LLM):
    """An OpenAI-compatible chat server. ``identity`` is the spec alone, so the same model served elsewhere
    reuses the cache."""

    def __init__(self, model: str, config: OpenAIConfig | None = None) -> None:
        import openai

        model = (model or "").strip()
        if not model:
            raise InvalidInput("openai backend: the model name is empty: use openai:<model>")
        self.model = model
        self.spec = f"openai:{model}"
        self.config = config or OpenAIConfig()
        self._client = openai.OpenAI(base_url=self.config.base_url, api_key=self.config.resolved_api_key(),
                                     timeout=self.config.timeout, max_retries=0)
        self.base_url = str(self._client.base_url).rstrip("/")
        self._server_models: list[str] = []
        self._reached = False  # the reachability check passed once; later connection errors are retried

    def describe(self) -> str:
        return f"{self.spec} at {self.base_url}"

    # -- the reachability check --------------------------------------------------------------------------
    def check_reachable(self) -> None:
        """``GET /models`` with a short timeout and no retries: a server that is not there fails in seconds.
        ``run`` does it before its first request, until it passes once (a server that answered before and
        drops out later is waited for by the retries).

        Only a connection failure is an error here; a server that lists models without this one may still
        load it on demand (``transformers serve`` lists only loaded models), and one without ``/models`` may
        still chat, so both are only logged."""
        import openai

        client = self._client.with_options(timeout=min(self.config.timeout, REACH_TIMEOUT_S), max_retries=0)
        try:
            listed = [m.id for m in client.models.list()]
        except openai.APIConnectionError as e:  # timeouts included
            raise Unavailable(f"cannot reach the LLM server at {self.base_url}: {_reason(e)}; "
                              "start it or pass --base-url") from None
        except openai.APIError as e:
            log.debug("GET %s/models failed (%s); trying the chat endpoint anyway", self.base_url, _one_line(e))
            self._reached = True
            return
        self._reached = True
        self._server_models = listed
        if listed and self.model not in listed:
            log.debug("%s lists %d model(s), not %s (it may load it on demand): %s", self.base_url, len(listed),
                      self.model, ", ".join(listed[:10]))

    # -- one request, with retries ---------------------------------------------------------------------
    def _create(self, request: Request) -> str:
        kwargs: dict[str, Any] = {"model": self.model, "messages": _messages(request),
                                  "temperature": request.temperature, "max_tokens": request.max_tokens,
                                  "seed": request.seed}
        if request.stop:
            kwargs["stop"] = list(request.stop)
        response = self._client.chat.completions.create(**kwargs)
        if not response.choices:
            raise Unavailable(f"the LLM server at {self.base_url} answered without any choice for {self.model}")
        return cut_at_stop(response.choices[0].message.content or "", request.stop)

    def _hint(self) -> str:
        if self._server_models and self.model not in self._server_models:
            return f" (the server lists {', '.join(self._server_models[:5])}; is the model name right?)"
        return ""

    def _fatal(self, e: Exception) -> Exception:
        """The typed error for a client error that retrying will not cure."""
        import openai

        status = getattr(e, "status_code", None)
        message = _one_line(getattr(e, "message", e))
        lowered = message.lower()
        if status == 404 or (status in (400, 422) and "model" in lowered
                             and ("not found" in lowered or "does not exist" in lowered)):
            return NotFound(f"the LLM server at {self.base_url} has no model {self.model!r} (HTTP {status}: "
                            f"{message}): check the model name and --base-url{self._hint()}")
        if status in (401, 403) or isinstance(e, (openai.AuthenticationError, openai.PermissionDeniedError)):
            return InvalidInput(f"the LLM server at {self.base_url} rejected the API key (HTTP {status}): "
                                "set UNIBIND_LLM_API_KEY or OPENAI_API_KEY")
        return InvalidInput(f"the LLM server at {self.base_url} refused the request for {self.model} "
                            f"(HTTP {status}): {message}")

    def _exhausted(self, e: Exception, attempts: int) -> Exception:
        import openai

        if isinstance(e, openai.RateLimitError):
            return Busy(f"rate limited (HTTP 429) by {self.base_url} after {attempts} attempts: "
                        "lower --concurrency or try later")
        status = getattr(e, "status_code", None)
        what = f"HTTP {status}: {_one_line(getattr(e, 'message', e))}" if status else _reason(e)
        return Unavailable(f"the LLM server at {self.base_url} failed for {self.model} after {attempts} attempts "
                           f"({what}){self._hint()}: check the server's log, or retry later")

    def _answer(self, request: Request, stop: threading.Event) -> str:
        """Ask until it works, retrying what a later try can cure, until retries run out or ``stop`` is set."""
        import openai

        attempts = 0
        while True:
            if stop.is_set():
                raise _Stopped
            attempts += 1
            try:
                return self._create(request)
            except (openai.RateLimitError, openai.APIConnectionError) as e:
                last: Exception = e
            except openai.APIStatusError as e:
                if e.status_code < 500:
                    raise self._fatal(e) from None
                last = e
            except openai.APIError as e:  # an answer the client could not read
                raise Unavailable(f"the LLM server at {self.base_url} sent an unreadable answer for {self.model}: "
                                  f"{_one_line(e)}") from None
            if attempts > self.config.retries:
                raise self._exhausted(last, attempts) from None
            delay = self.config.wait_before(attempts)
            status = getattr(last, "status_code", None)
            log.info("LLM request to %s failed (%s, attempt %d of %d); retrying in %.2f s", self.base_url,
                     f"HTTP {status}" if status else type(last).__name__, attempts, self.config.retries + 1, delay)
            if stop.wait(delay):
                raise _Stopped

    # -- the interface -----------------------------------------------------------------------------------
    def run(self, requests: Sequence[Request], on_result: Callable[[int, str], None]) -> None:
        """Answer ``requests`` ``concurrency`` at a time; ``on_result`` runs in this thread as each finishes.
        On a failure retries did not cure, no further request is started and the typed error is raised.

        The workers are daemon threads and this thread waits for their results in short slices, so Ctrl-C stops a
        run at once: the requests in flight are abandoned (not waited for), the answers already delivered stay."""
        if not requests:
            return
        if not self._reached:
            self.check_reachable()
        stop = threading.Event()
        todo: queue.SimpleQueue[int] = queue.SimpleQueue()
        for i in range(len(requests)):
            todo.put(i)
        done: queue.SimpleQueue[tuple[int, str | None, BaseException | None]] = queue.SimpleQueue()

        def worker() -> None:
            while not stop.is_set():
                try:
                    i = todo.get_nowait()
                except queue.Empty:
                    return
                try:
                    done.put((i, self._answer(requests[i], stop), None))
                except _Stopped:
                    return
                except BaseException as e:  # delivered to the calling thread, which raises it
                    done.put((i, None, e))
                    return

        threads = [threading.Thread(target=worker, name=f"unibind-llm-{k}", daemon=True)
                   for k in range(min(self.config.concurrency, len(requests)))]
        for t in threads:
            t.start()
        received = 0
        try:
            while received < len(requests):
                try:
                    i, text, error = done.get(timeout=0.2)  # short waits keep Ctrl-C responsive
                except queue.Empty:
                    if not any(t.is_alive() for t in threads) and done.empty():
                        raise RuntimeError("LLM workers ended without answering every request") from None
                    continue
                if error is not None:
                    raise error
                on_result(i, text)  # type: ignore[arg-type]
                received += 1
        finally:
            stop.set()  # no new request starts; in-flight ones give up at their next retry wait

    def close(self) -> None:
        self._client.close()
