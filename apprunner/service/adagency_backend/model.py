"""The one interface the graph calls a language model through: `await model.generate(step, prompt) -> str`.

- `GeminiModel`: Google's Gemini REST API (`generateContent`) over HTTPS with httpx; the key from the declared
  secret GEMINI_API_KEY goes in the `x-goog-api-key` header (never in a URL, so never in a log line).
- `FakeModel`: deterministic (the answer is a function of step and prompt), no network; used by the tests and
  by `WORKER_MODEL=fake`. It fails every time for a prompt containing POISON_MARKER. With a directory
  (WORKER_FAKE_MODEL_DIR) it appends one line per call to `<dir>/calls.log`, so tests count calls across
  processes, and a file `<dir>/block-<step>` holds it at that step (it touches `blocked-<step>-<pid>` and waits
  until the file is removed), so tests can kill or stop a worker at a known node.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import unicodedata
from pathlib import Path
from typing import Protocol

import httpx

from .settings import WorkerSettings

log = logging.getLogger(__name__)

GEMINI_URL = "https://generativelanguage.googleapis.com/v1beta/models/{model}:generateContent"
GEMINI_TIMEOUT_SECONDS = 60.0
GEMINI_RETRY_DELAYS = (1.0, 3.0)  # in-call retries on 429/5xx before the step fails (SQS then retries the run)
OUTPUT_MAX_CHARS = 4000
MAX_OUTPUT_TOKENS = 8192  # answer + thinking tokens of one call; the prompts ask for at most ~200 words
POISON_MARKER = "[poison]"


class ModelError(RuntimeError):
    """The model could not answer. The message is ours (safe to show in a run's state): no key, no prompt."""


class Model(Protocol):
    name: str

    async def generate(self, step: str, prompt: str) -> str:
        """Answer `prompt` for graph step `step`; raise ModelError when there is no usable answer."""
        ...


def clean_text(text: str) -> str:
    """Model output made safe for jsonb and SSE: no NUL/control characters except newline and tab, bounded."""
    kept = "".join(ch for ch in text if ch in "\n\t" or not unicodedata.category(ch).startswith("C"))
    return kept.strip()[:OUTPUT_MAX_CHARS]


class GeminiModel:
    """Gemini `generateContent` (https://ai.google.dev/api/generate-content); key in the x-goog-api-key header."""

    name = "gemini"

    def __init__(self, api_key: str, model: str, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._key = api_key
        self._url = GEMINI_URL.format(model=model)
        self._client = httpx.AsyncClient(timeout=GEMINI_TIMEOUT_SECONDS, transport=transport)

    async def generate(self, step: str, prompt: str) -> str:
        if not self._key:
            raise ModelError("the Gemini API key is not set (secret GEMINI_API_KEY)")
        # thinking models count their thinking tokens against maxOutputTokens: leave room, or answers come back empty
        body = {"contents": [{"role": "user", "parts": [{"text": prompt}]}],
                "generationConfig": {"temperature": 0.7, "maxOutputTokens": MAX_OUTPUT_TOKENS}}
        for attempt in range(len(GEMINI_RETRY_DELAYS) + 1):
            try:
                resp = await self._client.post(self._url, json=body, headers={"x-goog-api-key": self._key})
            except httpx.HTTPError as e:
                status, error = None, f"Gemini unreachable ({type(e).__name__})"
            else:
                status, error = resp.status_code, f"Gemini answered HTTP {resp.status_code}"
                if status == 200:
                    return self._text(resp)
            retryable = status is None or status == 429 or status >= 500
            if not retryable or attempt == len(GEMINI_RETRY_DELAYS):
                raise ModelError(f"{step}: {error}")
            log.warning("model call failed; retrying", extra={"step": step, "status": status})
            await asyncio.sleep(GEMINI_RETRY_DELAYS[attempt])
        raise AssertionError("unreachable")

    @staticmethod
    def _text(resp: httpx.Response) -> str:
        try:
            candidate = resp.json()["candidates"][0]
            text = "".join(part.get("text", "") for part in candidate["content"]["parts"])
        except (ValueError, KeyError, IndexError, TypeError):
            raise ModelError("Gemini returned no text (blocked or empty answer)") from None
        text = clean_text(text)
        if not text:
            raise ModelError("Gemini returned an empty answer")
        return text

    async def close(self) -> None:
        await self._client.aclose()


class FakeModel:
    """Deterministic stand-in: same step and prompt, same answer. See the module docstring for the test hooks."""

    name = "fake"

    def __init__(self, directory: str = "") -> None:
        self.dir = Path(directory) if directory else None
        self.calls = 0

    async def generate(self, step: str, prompt: str) -> str:
        self.calls += 1
        if self.dir is not None:
            with open(self.dir / "calls.log", "a") as f:  # one short append per call: safe across processes
                f.write(f"{step} {os.getpid()}\n")
            block = self.dir / f"block-{step}"
            if block.exists():
                (self.dir / f"blocked-{step}-{os.getpid()}").touch()
                while block.exists():
                    await asyncio.sleep(0.05)
        if POISON_MARKER in prompt:
            raise ModelError(f"{step}: the model refused this brief")
        digest = hashlib.sha256(f"{step}\n{prompt}".encode()).hexdigest()[:8]
        if step == "outline":
            return "\n".join(f"Scene {i}: beat {i} of the concept ({digest})" for i in range(1, 5))
        if step == "storyboard":
            scenes = [line for line in prompt.split("Scenes:\n", 1)[-1].splitlines() if line.strip()]
            return "\n".join(f"Frame {i}: wide shot, {s[:40]} ({digest})" for i, s in enumerate(scenes, 1))
        first_line = prompt.strip().splitlines()[-1][:80]
        return f"Concept ({digest}): {first_line}"

    async def close(self) -> None:
        return None


def build_model(settings: WorkerSettings) -> GeminiModel | FakeModel:
    if settings.model == "fake":
        return FakeModel(settings.fake_model_dir)
    return GeminiModel(settings.base.gemini_api_key, settings.gemini_model)
