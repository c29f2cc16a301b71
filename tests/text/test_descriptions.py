"""Prompts, the shipped corpus, the description file, offline describe and the local provider."""

from __future__ import annotations

import json
import re

import pytest
import typer
from typer.testing import CliRunner

from hnf.errors import HnfError
from hnf.text import corpus_datasets, match_class, offline_descriptions
from hnf.text.corpus import corpus_classes
from hnf.text.describe import classes_from_data, describe, load_or_offline, parse_classes
from hnf.text.descriptions import Description, DescriptionSet, normalize_class
from hnf.text.prompts import load_prompts, select_prompts, step_by_step_cue

NFFA = ["Biological", "Fibres", "Films_Coated_Surface", "MEMS_devices_and_electrodes", "Nanowires",
        "Particles", "Patterned_surface", "Porous_Sponge", "Powder", "Tips"]
UHCS = ["network", "pearlite", "spheroidite"]
NEU = ["crazing", "inclusion", "patches", "pitted_surface", "rolled-in_scale", "scratches"]


def test_prompt_templates_ask_for_every_point_and_end_with_the_cue():
    prompts = load_prompts()
    assert len(prompts) >= 3 and len({p.id for p in prompts}) == len(prompts)
    cue = step_by_step_cue()
    assert cue == "Let's think step by step."
    for p in prompts:
        system, user = p.render("Nanowires", NFFA)
        assert user.endswith(cue)
        low = user.lower()
        for word in ("structure", "morpholog", "synthes", "propert", "application", "micrograph"):
            assert word in low, (p.id, word)
        assert "Tips" in user and "Biological" in user  # the other classes, to contrast with
        assert re.search(r"distinguish|differ|separate", low), p.id
        assert "{" not in user and system


def test_select_prompts():
    assert [p.id for p in select_prompts("cot_contrastive, cot_overview")] == ["cot_contrastive", "cot_overview"]
    assert len(select_prompts("all")) == len(load_prompts())
    with pytest.raises(HnfError, match="unknown prompt id"):
        select_prompts("nope")


@pytest.mark.parametrize("classes", [NFFA, UHCS, NEU])
def test_corpus_covers_the_classes_with_three_long_distinct_descriptions(classes):
    ds = offline_descriptions(classes)
    for name in classes:
        descs = ds.for_class(name)
        texts = [d.text for d in descs]
        assert len(texts) >= 3 and len(set(texts)) == len(texts), name
        for d in descs:
            assert len(d.text.split()) >= 120, (name, d.prompt_id)
            assert d.provider == "hnf-corpus" and d.model == "hand-written"
            assert "written by hand for this project" in d.extra["note"].lower()
            assert d.date
        # the description names the other classes it is told apart from
        others = [c for c in classes if c != name]
        mentioned = {o for o in others for t in texts if o.lower().replace("_", " ") in t.lower().replace("_", " ")}
        assert len(mentioned) >= min(2, len(others)), (name, mentioned)


def test_corpus_descriptions_cover_the_prompt_points():
    for cc in corpus_classes():
        joined = " ".join(e["text"] for e in cc.entries).lower()
        for words in (("structur", "morpholog"), ("micrograph", "image"), ("made", "produc", "form", "synthes"),
                      ("propert", "strength", "hard"), ("appli", "used", "uses"), ("differ", "distinguish", "versus", "against")):
            assert any(w in joined for w in words), (cc.name, words)


def test_class_matching_is_forgiving():
    assert match_class("films coated surface").name == "Films_Coated_Surface"
    assert match_class("MEMS-devices-and-electrodes").name == "MEMS_devices_and_electrodes"
    assert match_class("Rolled In Scale").name == "rolled-in_scale"
    assert match_class("PITTED_SURFACE").name == "pitted_surface"
    assert match_class("porous-sponge").name == "Porous_Sponge"
    assert match_class("graphene") is None
    ds = offline_descriptions(["nanowires", "TIPS"])
    assert ds.classes == ["nanowires", "TIPS"]  # the caller's spelling is kept
    assert {d.extra["corpus_class"] for d in ds.descriptions} == {"Nanowires", "Tips"}
    assert normalize_class("Rolled-in_scale ") == "rolledinscale"


def test_unknown_class_fails_with_how_to_get_descriptions():
    with pytest.raises(HnfError) as info:
        offline_descriptions(["Nanowires", "Graphene oxide"])
    msg = str(info.value)
    assert "Graphene oxide" in msg and "--provider openai" in msg and "docs/descriptions.md" in msg


def test_corpus_datasets_lists_all_three():
    ds = corpus_datasets()
    assert ds["nffa-europe-sem"] == NFFA and ds["uhcs-3class"] == UHCS and ds["neu-surface"] == NEU


def test_user_written_short_form_and_round_trip(tmp_path):
    path = tmp_path / "mine.json"
    path.write_text(json.dumps({"Graphene": ["Sheets of carbon."], "Soot": ["Fractal aggregates.", "Black."]}))
    ds = load_or_offline(path, ["graphene", "soot"])
    assert ds.texts_by_class(["graphene", "soot"]) == {"graphene": ["Sheets of carbon."], "soot": ["Fractal aggregates.", "Black."]}
    assert ds.descriptions[0].provider == "user"
    ds.save(tmp_path / "full.json")
    again = DescriptionSet.load(tmp_path / "full.json")
    assert [d.to_json() for d in again.descriptions] == [d.to_json() for d in ds.descriptions]
    with pytest.raises(HnfError, match="no description for class"):
        load_or_offline(path, ["graphene", "diamond"])
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(HnfError, match="not a description file"):
        DescriptionSet.load(tmp_path / "bad.json")


def test_offline_describe_keeps_existing_entries(tmp_path):
    out = tmp_path / "d.json"
    ds, rep = describe(UHCS, None, per_class=2, save=lambda d: d.save(out))
    assert rep.written == 6 and len(DescriptionSet.load(out)) == 6
    # an extra user entry survives a later run; the corpus entries are cache hits
    ds.add(Description("pearlite", "my own words", "user", "me", "user", None, 0, ""))
    ds.save(out)
    ds2, rep2 = describe(UHCS, None, cache=DescriptionSet.load(out), save=lambda d: d.save(out))
    assert rep2.cached == 6 and rep2.written == 3
    assert "my own words" in [d.text for d in ds2.for_class("pearlite")]


def test_classes_from_data(shared_data, tmp_path):
    assert classes_from_data(shared_data / "neu-surface") == NEU
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,label\na.png,B\nb.png,A\nc.png,B\n")
    assert classes_from_data(manifest) == ["A", "B"]
    with pytest.raises(HnfError):
        parse_classes("A,a")


def _app() -> typer.Typer:
    """The text commands on their own (importing all of ``hnf.cli`` loads every model: slow)."""
    from hnf.cli.text_commands import describe as describe_cmd
    from hnf.cli.text_commands import text_app

    app = typer.Typer()
    app.command("describe")(describe_cmd)
    app.add_typer(text_app, name="text")
    return app


def test_cli_describe_offline(tmp_path, shared_data):
    runner = CliRunner()
    out = tmp_path / "neu.json"
    res = runner.invoke(_app(), ["describe", "--data", str(shared_data / "neu-surface"), "--provider", "offline", "--out", str(out)])
    assert res.exit_code == 0, res.output
    data = json.loads(out.read_text())
    assert data["format"] == "hnf-descriptions" and data["classes"] == NEU
    assert len(data["descriptions"]) == 18
    first = data["descriptions"][0]
    assert {"class", "text", "provider", "model", "prompt_id", "temperature", "date"} <= set(first)
    res = runner.invoke(_app(), ["describe", "--classes", "Tips,Graphene", "--out", str(tmp_path / "x.json")])
    assert res.exit_code == 2 and "Graphene" in res.output
    assert not (tmp_path / "x.json").exists()


def test_local_provider_with_a_tiny_causal_lm(tiny_gpt2_dir, tmp_path):
    from hnf.text.providers import LocalHFProvider

    prov = LocalHFProvider(tiny_gpt2_dir, temperature=0.8, max_new_tokens=12, device="cpu")
    ds, rep = describe(["Nanowires", "Tips"], prov, prompts=select_prompts("cot_overview"), per_class=1)
    assert rep.written == 2
    d = ds.for_class("Tips")[0]
    assert d.text.strip() and d.provider == "local" and d.model == str(tiny_gpt2_dir)
    assert d.temperature == 0.8 and d.prompt_id == "cot_overview"
    # sampling is seeded by the sample index: the same request gives the same text
    assert prov.generate("s", "u", seed=3) == prov.generate("s", "u", seed=3)
