"""Language-model providers that write class descriptions.

- :class:`OpenAIProvider`: any OpenAI-compatible chat endpoint (OpenAI, vLLM, Ollama, llama.cpp's
  server, LM Studio) through the ``openai`` client. The key comes from an environment variable and is
  never printed, logged or stored.
- :class:`LocalHFProvider`: a Hugging Face causal language model from a folder, with ``transformers``.
- :func:`make_provider`: the provider of a name (``openai``, ``local`` or ``offline``).

The offline provider (the shipped corpus) lives in :mod:`hnf.text.corpus`.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

from hnf.errors import HnfError

log = logging.getLogger(__name__)

API_KEY_ENV_VARS = ("HNF_LLM_API_KEY", "OPENAI_API_KEY")
PLACEHOLDER_KEY = "not-needed"  # local servers (vLLM, Ollama, llama.cpp) accept any key


class ProviderError(HnfError):
    """A provider failed in a way the user must fix (key, model name, URL) or retries ran out."""


class Provider(Protocol):
    name: str
    model: str
    temperature: float

    def generate(self, system: str, user: str, *, seed: int | None = None) -> str: ...

    def provenance(self) -> dict[str, Any]: ...


def sanitize_url(url: str | None) -> str | None:
    """``url`` without user info, query or fragment (so no secret ends up in a cache file)."""
    if not url:
        return url
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


class OpenAIProvider:
    """Chat completions from an OpenAI-compatible endpoint, with timeouts and retries.

    Retries with exponential backoff (honouring ``Retry-After`` up to ``max_backoff``) on 429, 5xx,
    timeouts and connection errors; a clear :class:`ProviderError` on 401/403 (key) and 404 (model
    or URL).
    """

    name = "openai"

    def __init__(
        self,
        model: str,
        base_url: str | None = None,
        *,
        api_key: str | None = None,
        api_key_env: tuple[str, ...] = API_KEY_ENV_VARS,
        temperature: float = 0.7,
        max_tokens: int = 900,
        timeout: float = 120.0,
        max_retries: int = 4,
        backoff: float = 1.0,
        max_backoff: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        try:
            import openai
        except ImportError as err:  # pragma: no cover - the llm extra is part of [all]
            raise ProviderError("the openai provider needs the `openai` package: pip install 'hnf[llm]'") from err
        self._openai = openai
        if not model:
            raise ProviderError("the openai provider needs --model (e.g. gpt-4o-mini, or the name your server serves)")
        self.model = model
        self.base_url = base_url
        self.temperature = float(temperature)
        self.max_tokens = int(max_tokens)
        self.timeout = float(timeout)
        self.max_retries = int(max_retries)
        self.backoff = float(backoff)
        self.max_backoff = float(max_backoff)
        self._sleep = sleep
        self._accepts_seed = True
        key = api_key
        if key is None:
            key = next((os.environ[v] for v in api_key_env if os.environ.get(v)), None)
        if key is None:
            if base_url is None and not os.environ.get("OPENAI_BASE_URL"):
                raise ProviderError(
                    f"no API key: set {' or '.join(api_key_env)} (or pass --base-url for a local "
                    "server that needs none)"
                )
            key = PLACEHOLDER_KEY
        self._secret = key
        # Retries are ours (max_retries=0 in the client) so that every attempt is logged and bounded.
        self._client = openai.OpenAI(api_key=key, base_url=base_url, timeout=self.timeout, max_retries=0)

    def __repr__(self) -> str:  # never shows the key
        return f"OpenAIProvider(model={self.model!r}, base_url={sanitize_url(self.base_url)!r})"

    def _redact(self, text: str) -> str:
        if self._secret and self._secret != PLACEHOLDER_KEY:
            text = text.replace(self._secret, "***")
        return text

    def provenance(self) -> dict[str, Any]:
        return {"base_url": sanitize_url(self.base_url), "max_tokens": self.max_tokens}

    def _delay(self, attempt: int, err: Exception) -> float:
        delay = self.backoff * (2**attempt)
        response = getattr(err, "response", None)
        if response is not None:
            retry_after = response.headers.get("retry-after")
            try:
                if retry_after is not None:
                    delay = float(retry_after)
            except ValueError:
                pass
        return max(0.0, min(delay, self.max_backoff))

    def generate(self, system: str, user: str, *, seed: int | None = None) -> str:
        oa = self._openai
        where = f"{sanitize_url(self.base_url) or 'api.openai.com'} model {self.model!r}"
        messages = ([{"role": "system", "content": system}] if system else []) + [
            {"role": "user", "content": user}
        ]
        # the sample's seed, for servers that sample reproducibly with one (OpenAI, vLLM, llama.cpp)
        extra = {"seed": seed} if seed is not None and self._accepts_seed else {}
        attempt = 0
        while attempt <= self.max_retries:
            try:
                resp = self._client.chat.completions.create(
                    model=self.model,
                    messages=messages,
                    temperature=self.temperature,
                    max_tokens=self.max_tokens,
                    **extra,
                )
            except oa.BadRequestError as err:
                if extra and "seed" in str(err.message).lower():  # a server that refuses the field
                    log.warning("%s: the server refuses a seed; sampling without one", where)
                    self._accepts_seed, extra = False, {}
                    continue
                raise ProviderError(f"{where}: HTTP 400: {self._redact(str(err.message))[:300]}") from None
            except oa.AuthenticationError:
                raise ProviderError(
                    f"{where}: authentication failed (HTTP 401): the API key was refused; set a valid key "
                    f"in {' or '.join(API_KEY_ENV_VARS)}"
                ) from None
            except oa.PermissionDeniedError:
                raise ProviderError(f"{where}: permission denied (HTTP 403) for this key and model") from None
            except oa.NotFoundError:
                raise ProviderError(
                    f"{where}: not found (HTTP 404): check --model (a model the server serves) and "
                    "--base-url (OpenAI-compatible servers usually end in /v1)"
                ) from None
            except (oa.RateLimitError, oa.InternalServerError, oa.APIConnectionError) as err:
                status = getattr(err, "status_code", None)
                what = f"HTTP {status}" if status else type(err).__name__
                if attempt >= self.max_retries:
                    raise ProviderError(
                        f"{where}: gave up after {attempt + 1} attempts ({what}); try later or raise --retries"
                    ) from None
                delay = self._delay(attempt, err)
                log.warning("%s: %s, retry %d/%d in %.1f s", where, what, attempt + 1, self.max_retries, delay)
                self._sleep(delay)
                attempt += 1
                continue
            except oa.APIStatusError as err:
                raise ProviderError(
                    f"{where}: HTTP {err.status_code}: {self._redact(str(err.message))[:300]}"
                ) from None
            choices = getattr(resp, "choices", None) or []
            text = (choices[0].message.content or "").strip() if choices else ""
            if not text:
                raise ProviderError(f"{where}: the response holds no text")
            return text
        raise AssertionError("unreachable")  # pragma: no cover


class LocalHFProvider:
    """A Hugging Face causal language model from a local folder (or a hub name where one is reachable)."""

    name = "local"

    def __init__(
        self,
        model: str | Path,
        *,
        temperature: float = 0.7,
        max_new_tokens: int = 600,
        device: str | None = None,
    ) -> None:
        if not model:
            raise ProviderError("the local provider needs --model PATH (a folder with a Hugging Face causal LM)")
        try:
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer
        except ImportError as err:  # pragma: no cover
            raise ProviderError("the local provider needs `transformers`: pip install 'hnf[llm]'") from err
        self._torch = torch
        self.model = str(model)
        self.temperature = float(temperature)
        self.max_new_tokens = int(max_new_tokens)
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        try:
            self._tok = AutoTokenizer.from_pretrained(self.model)
            self._lm = AutoModelForCausalLM.from_pretrained(self.model).to(self.device).eval()
        except OSError as err:
            raise ProviderError(f"{self.model}: cannot load a causal language model there ({err})") from None

    def provenance(self) -> dict[str, Any]:
        return {"max_new_tokens": self.max_new_tokens}

    def _encode(self, system: str, user: str) -> Any:
        tok = self._tok
        if getattr(tok, "chat_template", None):
            messages = ([{"role": "system", "content": system}] if system else []) + [
                {"role": "user", "content": user}
            ]
            ids = tok.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
            return ids["input_ids"]
        prompt = (system + "\n\n" if system else "") + user + "\n\n"
        return tok(prompt, return_tensors="pt")["input_ids"]

    def generate(self, system: str, user: str, *, seed: int | None = None) -> str:
        torch = self._torch
        input_ids = self._encode(system, user).to(self.device)
        if seed is not None:
            torch.manual_seed(seed)
        pad = self._tok.pad_token_id if self._tok.pad_token_id is not None else self._tok.eos_token_id
        with torch.no_grad():
            out = self._lm.generate(
                input_ids,
                attention_mask=torch.ones_like(input_ids),
                do_sample=self.temperature > 0,
                temperature=self.temperature if self.temperature > 0 else None,
                top_p=0.95 if self.temperature > 0 else None,
                max_new_tokens=self.max_new_tokens,
                pad_token_id=pad,
            )
        text = self._tok.decode(out[0, input_ids.shape[1]:], skip_special_tokens=True).strip()
        if not text:
            raise ProviderError(f"{self.model}: the model generated no text")
        return text


def make_provider(
    name: str,
    model: str | None = None,
    *,
    base_url: str | None = None,
    api_key_env: str = API_KEY_ENV_VARS[0],
    temperature: float = 0.7,
    max_tokens: int = 900,
    timeout: float = 120.0,
    max_retries: int = 4,
) -> Provider | None:
    """The provider called ``name`` (case and surrounding spaces ignored), or None for ``offline``.

    ``None`` is what :func:`hnf.text.describe.describe` takes for the corpus shipped with hnf.
    ``model`` is the model name an ``openai`` endpoint serves, or the folder of a ``local`` causal
    LM. ``api_key_env`` is tried first for the ``openai`` key, then :data:`API_KEY_ENV_VARS`.
    ``max_tokens`` bounds each answer; ``base_url``, ``timeout`` and ``max_retries`` apply to
    ``openai`` only. An unknown name is a :class:`ProviderError`.
    """
    kind = name.strip().lower()
    if kind == "offline":
        return None
    if kind == "openai":
        envs = (api_key_env, *[e for e in API_KEY_ENV_VARS if e != api_key_env])
        return OpenAIProvider(
            model or "", base_url, api_key_env=envs, temperature=temperature, max_tokens=max_tokens,
            timeout=timeout, max_retries=max_retries,
        )
    if kind == "local":
        return LocalHFProvider(model or "", temperature=temperature, max_new_tokens=max_tokens)
    raise ProviderError(f"unknown --provider {name!r}: use openai, local or offline")
