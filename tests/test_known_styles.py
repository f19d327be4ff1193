"""What the model knows: known styles from checkpoint metadata, nearest-style matching with the
editor's text back-end, the threshold warning, `--help` epilogs and the WebRTC server's /styles."""
from __future__ import annotations

import argparse
import asyncio
import json
import logging
from types import SimpleNamespace

import aiohttp
import pytest

from live3dpe.cli import build_parser
from live3dpe.model import editor as editor_module
from live3dpe.model import known_styles as ks
from live3dpe.synth.styles import STYLES

pytestmark = pytest.mark.timeout(900)  # MiniLM loads in seconds, but minutes on a machine busy training

UNRELATED = ("a photo of a cat", "make it look like a banana", "asdf", "hello", "a dog", "the weather is nice today")
PROMPT_COMMANDS = ("live", "process", "edit", "serve", "eval")


# what default_tiny was trained on (its sidecar's training.styles_trained): the set the threshold was measured on
TRAINED = ["golden_statue", "bronze", "marble", "zombie", "blue_skin", "pale_vampire", "clown", "pop_art", "charcoal_sketch", "grey_hair", "red_hair"]
LABELS = [name.replace("_", " ") for name in TRAINED]


def _sidecar_training(path) -> dict | None:
    """A checkpoint's training metadata, read here independently of the code under test."""
    sidecar = path.with_suffix(".json")
    return json.loads(sidecar.read_text())["training"] if sidecar.is_file() else None


@pytest.fixture
def tiny_default(tmp_path, monkeypatch):
    """DEFAULT_WEIGHTS pointing at a sidecar listing TRAINED (the real default may not be built yet)."""
    path = tmp_path / "default_x.safetensors"
    path.with_suffix(".json").write_text(json.dumps({"training": {"styles_trained": TRAINED}}))
    path.write_bytes(b"")  # exists: the help only reads the sidecar
    monkeypatch.setattr(editor_module, "DEFAULT_WEIGHTS", path)
    return path


@pytest.fixture(scope="module")
def backend():
    from live3dpe.model.text_prompt import make_text_backend

    try:
        return make_text_backend("minilm")
    except RuntimeError as err:
        pytest.skip(str(err))


@pytest.fixture(scope="module")
def editor(backend):
    """Stands in for a loaded Editor: what known_styles reads from one (metadata + text back-end)."""
    return SimpleNamespace(meta=SimpleNamespace(training={"styles_trained": TRAINED}), text_backend=backend)


@pytest.fixture(scope="module")
def matcher(editor) -> ks.StyleMatcher:
    m = ks.editor_matcher(editor)
    assert m is not None
    return m


def test_known_styles_come_from_the_checkpoint_metadata(tmp_path):
    styles = ks.known_styles({"styles_trained": ["bronze", "red_hair", "not_in_catalogue"]})
    assert [s.name for s in styles] == ["bronze", "red_hair", "not_in_catalogue"]
    assert [s.label for s in styles] == ["bronze", "red hair", "not in catalogue"]
    assert styles[0].example in STYLES["bronze"].train_phrases and styles[0].phrases == STYLES["bronze"].training_texts
    assert styles[2].phrases == ("not in catalogue",)
    # no record of what was trained (official import, random weights): unknown, not empty
    assert ks.known_styles({"steps": 10}) is None and ks.known_styles(None) is None
    sidecar = tmp_path / "ckpt.json"
    sidecar.write_text(json.dumps({"training": {"styles_trained": ["marble"]}}))
    assert [s.name for s in ks.checkpoint_known_styles(tmp_path / "ckpt.safetensors")] == ["marble"]
    sidecar.write_text(json.dumps({"training": {}}))
    assert ks.checkpoint_known_styles(tmp_path / "ckpt.safetensors") is None
    assert ks.checkpoint_known_styles(tmp_path / "missing.safetensors") is None
    assert "unknown" in ks.styles_line(None)


def test_bundled_styles_follow_default_weights(tmp_path, monkeypatch):
    recorded = (_sidecar_training(editor_module.DEFAULT_WEIGHTS) or {}).get("styles_trained")
    found = ks.bundled_known_styles()
    assert (found and [s.name for s in found]) == (recorded or None)  # not built yet / no record: unknown
    other = tmp_path / "default_other.safetensors"
    other.with_suffix(".json").write_text(json.dumps({"training": {"styles_trained": ["clown", "zombie"]}}))
    monkeypatch.setattr(editor_module, "DEFAULT_WEIGHTS", other)
    assert [s.name for s in ks.bundled_known_styles()] == ["clown", "zombie"]
    assert "no bundled model at default_other.safetensors" in ks.prompt_help_epilog()  # weights not built yet
    other.write_bytes(b"")
    assert "clown, zombie;" in ks.prompt_help_epilog()


def test_random_weights_have_unknown_styles_and_no_warning(backend, caplog):
    random_editor = SimpleNamespace(meta=None, text_backend=backend)  # what Editor._random builds: meta=None
    assert ks.editor_known_styles(random_editor) is None and ks.editor_matcher(random_editor) is None
    with caplog.at_level(logging.INFO, logger="live3dpe"):
        assert ks.log_prompt_check(random_editor, "a golden statue") is None
    assert [r.levelno for r in caplog.records] == [logging.INFO]
    assert "does not record" in caplog.text
    assert ks.prompt_feedback(random_editor, "x")["known"] is None


def test_a_training_phrase_maps_to_its_own_style(matcher):
    pairs = [(s.name, p) for s in matcher.styles for p in s.phrases]
    for (name, phrase), m in zip(pairs, matcher.match_many([p for _, p in pairs])):
        assert m.style.name == name, phrase
        assert m.similarity == pytest.approx(1.0, abs=1e-4)
    found, sim = matcher.nearest_style(matcher.styles[0].phrases[-1])  # the one-prompt call
    assert found == matcher.styles[0] and sim == pytest.approx(1.0, abs=1e-4)


def test_a_description_of_the_look_names_the_style_that_has_it(matcher):
    """With the phrasings alone MiniLM put "green skin" nearest to blue skin (0.75); the looks
    (`Style.looks`) describe zombie's green skin and marble's grey stone."""
    assert [m.style.name for m in matcher.match_many(["green skin", "grey stone statue"])] == ["zombie", "marble"]


def test_heldout_phrases_map_to_their_own_style(matcher):
    """Measured with MiniLM: 53 of 55 held-out phrases are nearest to their own style and all 55
    are above the threshold (lowest 0.54)."""
    pairs = [(s.name, p) for s in matcher.styles for p in STYLES[s.name].heldout_phrases]
    results = list(zip([n for n, _ in pairs], matcher.match_many([p for _, p in pairs])))
    assert len(results) == 55
    right = sum(m.style.name == name for name, m in results) / len(results)
    assert right >= 0.95
    assert all(m.similarity >= ks.SIMILARITY_THRESHOLD for name, m in results if m.style.name == name)


def test_unrelated_prompts_fall_below_the_threshold_and_warn(editor, matcher, caplog):
    for m in matcher.match_many(UNRELATED):
        assert m.similarity < ks.SIMILARITY_THRESHOLD, m.prompt
    with caplog.at_level(logging.INFO, logger="live3dpe"):
        match = ks.log_prompt_check(editor, "make it look like a banana")
    assert not match.known
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "does not know this style" in warnings[0] and "banana" in warnings[0]


def test_a_near_prompt_logs_its_nearest_style(editor, caplog):
    with caplog.at_level(logging.INFO, logger="live3dpe"):
        match = ks.log_prompt_check(editor, "a shiny gold statue")
    assert match.style.name == "golden_statue" and match.known
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert 'prompt "a shiny gold statue" → nearest known style "golden statue" (similarity 0.' in caplog.text


def test_a_run_logs_the_nearest_style_when_it_loads_the_model(editor, monkeypatch, caplog):
    from live3dpe.pipeline.commands import load_editor

    monkeypatch.setattr(editor_module.Editor, "load", classmethod(lambda cls, *a, **k: editor))
    with caplog.at_level(logging.INFO, logger="live3dpe"):
        load_editor(argparse.Namespace(prompt="  asdf ", checkpoint=None, device="cpu"))
    assert 'prompt "asdf" → nearest known style' in caplog.text and "does not know this style" in caplog.text


def _help(command: str) -> str:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[command]
    assert any("--prompt" in opt for a in sub._actions for opt in a.option_strings)
    return " ".join(sub.format_help().split())  # argparse re-wraps the epilog


@pytest.mark.parametrize("command", PROMPT_COMMANDS)
def test_help_of_every_prompt_command_lists_the_known_styles(command, tiny_default):
    assert f"known styles: {', '.join(LABELS)};" in _help(command)


def test_help_follows_the_real_default_weights():
    recorded = (_sidecar_training(editor_module.DEFAULT_WEIGHTS) or {}).get("styles_trained")
    expected = ", ".join(n.replace("_", " ") for n in recorded) + ";" if recorded else "known styles: unknown"
    if not editor_module.DEFAULT_WEIGHTS.is_file():
        expected = f"known styles: unknown (no bundled model at {editor_module.DEFAULT_WEIGHTS.name}"
    assert expected in _help("process")


def test_every_command_with_a_prompt_option_is_covered():
    parser = build_parser()
    choices = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    with_prompt = {name for name, p in choices.items() if any(o in ("--prompt", "--prompts") for a in p._actions for o in a.option_strings)}
    assert with_prompt == set(PROMPT_COMMANDS)


def test_serve_lists_the_styles_and_answers_each_prompt(editor):
    from live3dpe.stream.engine import Stage
    from live3dpe.stream.synthetic import SyntheticFaceSource
    from live3dpe.webapp.rtc_client import LoopbackClient
    from live3dpe.webapp.server import WebRTCServer, running_app

    def keep(work) -> None:
        work.output = work.frame.image

    server = WebRTCServer(
        lambda: [Stage("keep", keep)],
        known_styles=ks.styles_payload(ks.editor_known_styles(editor)),
        prompt_feedback=lambda text: ks.prompt_feedback(editor, text),
    )

    async def scenario():
        async with running_app(server.app) as url:
            async with aiohttp.ClientSession() as http, http.get(f"{url}/styles") as r:
                info = await r.json()
            assert [s["name"] for s in info["known_styles"]] == TRAINED
            assert info["known_styles"][0]["example"] in STYLES["golden_statue"].train_phrases
            async with aiohttp.ClientSession() as http:  # the page has where to show both, and asks for the list
                async with http.get(f"{url}/") as r:
                    page = await r.text()
                async with http.get(f"{url}/static/app.js") as r:
                    script = await r.text()
            assert 'id="known-styles"' in page and 'id="prompt-match"' in page
            assert 'fetch("styles")' in script and '"prompt_match"' in script
            async with LoopbackClient(url, SyntheticFaceSource(160, 120, fps=15)) as client:
                await client.control(prompt="make it look like a banana")
                got = await client.wait_for(lambda: client.prompt_matches, 120, "a prompt match")
                assert got[-1]["known"] is False and "does not know this style" in got[-1]["message"]
                await client.control(prompt="a marble bust")
                got = await client.wait_for(lambda: len(client.prompt_matches) > 1 and client.prompt_matches, 60, "a second match")
                assert got[-1]["style"] == "marble" and got[-1]["known"] is True

    asyncio.run(scenario())


def test_a_server_without_styles_says_unknown():
    from live3dpe.webapp.server import WebRTCServer, running_app

    async def scenario():
        async with running_app(WebRTCServer(lambda: []).app) as url:
            async with aiohttp.ClientSession() as http, http.get(f"{url}/styles") as r:
                return await r.json()

    info = asyncio.run(scenario())
    assert info["known_styles"] is None and "unknown" in info["line"]


def test_gradio_app_shows_the_styles_and_the_nearest_one(editor, tmp_path):
    from live3dpe.webapp.gradio_app import UiHandlers, build_app
    from live3dpe.webapp.styles import StyleBook

    book = StyleBook(editor)
    app = build_app(book, tmp_path)
    config = app.get_config_file()
    texts = [str(c.get("props", {}).get("value")) for c in config["components"] if c.get("type") == "markdown"]
    assert any(f"known styles: {', '.join(LABELS)};" in t for t in texts)
    datasets = [c["props"] for c in config["components"] if c.get("type") == "dataset"]
    assert len(datasets) == 2  # the Edit and Webcam prompts each list the styles as examples
    assert [row[0] for row in datasets[0]["samples"]] == [STYLES[n].train_phrases[0] for n in TRAINED]
    assert sum(getattr(f.fn, "__name__", "") == "prompt_feedback" for f in app.fns.values()) == 2  # typed prompt -> feedback

    h = UiHandlers(book, tmp_path)
    far = h.prompt_feedback("asdf")
    assert far.startswith("⚠️") and "does not know this style" in far
    near = h.prompt_feedback("turn him into a zombie")
    assert '"zombie"' in near and "⚠️" not in near
    assert h.prompt_feedback("  ") == ""


def test_batched_phrase_embeddings_equal_one_by_one(backend):
    """The matcher embeds its phrases in one padded pass; padding must not change the vectors,
    and a back-end without the batch call gives the same similarities."""
    phrases = ["red hair", "cast the person in solid gold", "make the person look like marble stone"]
    batched = backend.encode_pooled(phrases)
    single = [backend.encode(p).pooled[0] for p in phrases]
    for b, s in zip(batched, single):
        assert b.shape == s.shape and (b - s).abs().max() < 1e-4
    styles = ks.known_styles({"styles_trained": ["red_hair", "marble"]})
    one_by_one = ks.StyleMatcher(styles, SimpleNamespace(name="minilm", encode=backend.encode))
    together = ks.StyleMatcher(styles, backend)
    a, b = one_by_one.similarities("ginger locks"), together.similarities("ginger locks")
    assert a.keys() == b.keys() and all(abs(a[k] - b[k]) < 1e-4 for k in a)
