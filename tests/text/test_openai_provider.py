"""The openai provider against a real HTTP server on 127.0.0.1, through the real `openai` client."""

from __future__ import annotations

import json
import logging

import pytest
from typer.testing import CliRunner

from hnf.cli.text_commands import describe as describe_cmd
from hnf.text.describe import describe
from hnf.text.descriptions import DescriptionSet
from hnf.text.prompts import select_prompts
from hnf.text.providers import OpenAIProvider, ProviderError, make_provider

from .conftest import Reply

KEY = "sk-test-SECRET-0123456789abcdef"
CLASSES = ["Nanowires", "Particles", "Tips"]


def provider(server, **kw) -> OpenAIProvider:
    kw.setdefault("sleep", lambda s: None)
    kw.setdefault("timeout", 5.0)
    return OpenAIProvider("test-model", server.base_url, api_key=KEY, **kw)


def test_request_shape(fake_openai):
    fake_openai.default = Reply(text="Nanowires are one-dimensional crystals.")
    prompt = select_prompts("cot_overview")[0]
    system, user = prompt.render("Nanowires", CLASSES)
    text = provider(fake_openai, temperature=0.3, max_tokens=123).generate(system, user)
    assert text == "Nanowires are one-dimensional crystals."
    [req] = fake_openai.requests
    assert req["path"] == "/v1/chat/completions"
    assert req["headers"]["authorization"] == f"Bearer {KEY}"
    body = req["json"]
    assert body["model"] == "test-model"
    assert body["temperature"] == 0.3 and body["max_tokens"] == 123
    roles = [m["role"] for m in body["messages"]]
    assert roles == ["system", "user"]
    user_msg = body["messages"][1]["content"]
    assert "Nanowires" in user_msg and "Particles, Tips" in user_msg
    assert user_msg.rstrip().endswith("Let's think step by step.")


@pytest.mark.parametrize("status", [429, 500, 503])
def test_retries_then_success(fake_openai, status):
    fake_openai.script = [Reply(status=status), Reply(status=status), Reply(text="ok after retries")]
    delays: list[float] = []
    p = provider(fake_openai, sleep=delays.append, backoff=0.5, max_retries=3)
    assert p.generate("s", "u") == "ok after retries"
    assert len(fake_openai.requests) == 3
    assert delays == [0.5, 1.0]  # exponential backoff


def test_retry_after_header_is_honoured(fake_openai):
    fake_openai.script = [Reply(status=429, headers={"retry-after": "2"}), Reply(text="fine")]
    delays: list[float] = []
    assert provider(fake_openai, sleep=delays.append, backoff=0.1).generate("s", "u") == "fine"
    assert delays == [2.0]


def test_retries_exhausted(fake_openai):
    fake_openai.default = Reply(status=500)
    with pytest.raises(ProviderError, match="gave up after 3 attempts"):
        provider(fake_openai, max_retries=2).generate("s", "u")
    assert len(fake_openai.requests) == 3


def test_timeout_is_retried_then_reported(fake_openai):
    fake_openai.script = [Reply(delay=1.5, text="too late"), Reply(text="in time")]
    p = provider(fake_openai, timeout=0.3, max_retries=1)
    assert p.generate("s", "u") == "in time"
    fake_openai.script = [Reply(delay=1.5), Reply(delay=1.5)]
    with pytest.raises(ProviderError, match="Timeout"):
        provider(fake_openai, timeout=0.3, max_retries=1).generate("s", "u")


def test_401_is_a_clear_error_without_the_key(fake_openai):
    fake_openai.default = Reply(status=401, body={"error": {"message": f"bad key {KEY}"}})
    with pytest.raises(ProviderError) as info:
        provider(fake_openai).generate("s", "u")
    msg = str(info.value)
    assert "401" in msg and "HNF_LLM_API_KEY" in msg
    assert KEY not in msg
    assert len(fake_openai.requests) == 1  # never retried


def test_404_names_model_and_url(fake_openai):
    fake_openai.default = Reply(status=404)
    with pytest.raises(ProviderError, match="--model.*--base-url"):
        provider(fake_openai).generate("s", "u")
    assert len(fake_openai.requests) == 1


def test_missing_key_without_base_url(monkeypatch):
    for var in ("HNF_LLM_API_KEY", "OPENAI_API_KEY", "OPENAI_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(ProviderError, match="HNF_LLM_API_KEY"):
        OpenAIProvider("gpt-4o-mini")


def test_key_from_env_fallback(fake_openai, monkeypatch):
    monkeypatch.delenv("HNF_LLM_API_KEY", raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-openai-env")
    OpenAIProvider("m", fake_openai.base_url).generate("s", "u")
    assert fake_openai.requests[-1]["headers"]["authorization"] == "Bearer sk-from-openai-env"
    monkeypatch.setenv("HNF_LLM_API_KEY", "sk-from-hnf-env")
    OpenAIProvider("m", fake_openai.base_url).generate("s", "u")
    assert fake_openai.requests[-1]["headers"]["authorization"] == "Bearer sk-from-hnf-env"


def test_make_provider_by_name(fake_openai, monkeypatch):
    monkeypatch.delenv("HNF_LLM_API_KEY", raising=False)
    monkeypatch.setenv("MY_KEY", "sk-from-my-env")
    assert make_provider("offline") is None  # the shipped corpus
    prov = make_provider(" OpenAI ", "m", base_url=fake_openai.base_url, api_key_env="MY_KEY", max_tokens=50, max_retries=1)
    assert isinstance(prov, OpenAIProvider) and prov.max_tokens == 50 and prov.max_retries == 1
    prov.generate("s", "u")
    assert fake_openai.requests[-1]["headers"]["authorization"] == "Bearer sk-from-my-env"
    with pytest.raises(ProviderError, match="the local provider needs --model"):
        make_provider("local")
    with pytest.raises(ProviderError, match="unknown --provider 'gpt': use openai, local or offline"):
        make_provider("gpt")


def test_cache_hit_and_refresh(fake_openai, tmp_path):
    out = tmp_path / "d.json"
    prompts = select_prompts("cot_overview,cot_contrastive")
    p = provider(fake_openai)
    ds, rep = describe(CLASSES, p, prompts=prompts, per_class=2, save=lambda d: d.save(out))
    assert rep.written == 12 and len(fake_openai.requests) == 12
    entry = ds.descriptions[0]
    assert (entry.provider, entry.model, entry.prompt_id, entry.temperature) == ("openai", "test-model", "cot_overview", 0.7)
    assert entry.date and entry.class_name == "Nanowires"
    # a second run with the saved file as cache asks the server nothing
    again, rep2 = describe(CLASSES, p, cache=DescriptionSet.load(out), prompts=prompts, per_class=2)
    assert (rep2.cached, rep2.written) == (12, 0) and len(fake_openai.requests) == 12
    # one more sample per class: only the new ones are requested
    _, rep3 = describe(CLASSES, p, cache=again, prompts=prompts, per_class=3)
    assert rep3.written == 6 and len(fake_openai.requests) == 18
    # refresh asks again
    _, rep4 = describe(["Tips"], p, cache=again, prompts=prompts[:1], per_class=1, refresh=True)
    assert rep4.written == 1 and len(fake_openai.requests) == 19


def test_partial_progress_survives_a_failure(fake_openai, tmp_path):
    out = tmp_path / "d.json"
    fake_openai.script = [Reply(text="first"), Reply(status=401)]
    with pytest.raises(ProviderError):
        describe(CLASSES, provider(fake_openai), prompts=select_prompts("cot_overview"), save=lambda d: d.save(out))
    saved = DescriptionSet.load(out)
    assert [d.text for d in saved.descriptions] == ["first"]
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]  # atomic: no leftovers


def test_cli_never_shows_or_stores_the_key(fake_openai, tmp_path, monkeypatch, caplog, capfd):
    monkeypatch.setenv("HNF_LLM_API_KEY", KEY)
    caplog.set_level(logging.DEBUG)
    for name in ("openai", "httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.DEBUG)
    fake_openai.script = [Reply(status=429, headers={"retry-after": "0"}), Reply(text=f"echo of nothing secret")]
    out = tmp_path / "desc.json"
    import typer

    app = typer.Typer()
    app.command()(describe_cmd)
    runner = CliRunner()
    args = ["--classes", "Nanowires,Tips", "--provider", "openai", "--model", "test-model",
            "--base-url", fake_openai.base_url, "--prompts", "cot_overview", "--out", str(out), "--verbose"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert len(fake_openai.requests) == 3  # 429 + 200 for Nanowires, 200 for Tips
    # 401 path through the CLI
    fake_openai.default = Reply(status=401, body={"error": {"message": f"invalid key {KEY}"}})
    res401 = runner.invoke(app, args + ["--refresh"])
    assert res401.exit_code == 2
    assert "401" in res401.output
    captured = capfd.readouterr()
    everything = res.output + res401.output + caplog.text + captured.out + captured.err + out.read_text()
    assert KEY not in everything
    assert KEY[-8:] not in everything
    data = json.loads(out.read_text())
    assert data["descriptions"][0]["base_url"] == fake_openai.base_url
    assert "api_key" not in json.dumps(data)


def test_unreachable_server_is_retried_then_reported():
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    delays: list[float] = []
    p = OpenAIProvider("m", f"http://127.0.0.1:{port}/v1", api_key=KEY, sleep=delays.append, max_retries=2, timeout=2)
    with pytest.raises(ProviderError, match="gave up after 3 attempts \\(APIConnectionError\\)"):
        p.generate("s", "u")
    assert len(delays) == 2


def test_the_samples_seed_is_sent_and_dropped_for_a_server_that_refuses_it(fake_openai):
    fake_openai.default = Reply(text="Tips are sharp probes.")
    p = provider(fake_openai, max_retries=0)
    assert p.generate("", "Describe Tips.", seed=7) == "Tips are sharp probes."
    assert fake_openai.requests[-1]["json"]["seed"] == 7
    p.generate("", "Describe Tips.")  # no seed given: none sent
    assert "seed" not in fake_openai.requests[-1]["json"]
    refusing = Reply(status=400, body={"error": {"message": "Unrecognized request argument supplied: seed",
                                                 "type": "invalid_request_error", "code": None}})
    fake_openai.script = [refusing]
    assert p.generate("", "Describe Tips.", seed=8) == "Tips are sharp probes."  # retried at once, without it
    assert [("seed" in r["json"]) for r in fake_openai.requests[-2:]] == [True, False]
    assert p.generate("", "Describe Tips.", seed=9) and "seed" not in fake_openai.requests[-1]["json"]
    fake_openai.script = [Reply(status=400)]
    with pytest.raises(ProviderError, match="HTTP 400: .*status 400"):
        p.generate("", "Describe Tips.", seed=10)
