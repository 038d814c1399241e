"""The family's hub repositories in the app's model picker: downloaded through the hub code as Moshi's, each one
in its mode (Hibiki: Translate; PersonaPlex: the Persona box), a gated one said in one dialog."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("PySide6")

import huggingface_hub  # noqa: E402
from huggingface_hub import errors  # noqa: E402

from app import controller as c  # noqa: E402
from app.models import TRANSLATE  # noqa: E402
from app.settings import FAMILY  # noqa: E402
from moshi_mlx import release  # noqa: E402
from moshi_mlx.loading import hub, memory  # noqa: E402
from support.app_fakes import ScriptModel  # noqa: E402
from support.app_window import WAIT_MS, App  # noqa: E402
from support.fake_hub import install_fake_hub  # noqa: E402

HIBIKI_CONFIG = {  # kyutai/hibiki-1b-mlx-bf16's config.json names every file
    "model_type": "hibiki",
    "moshi_name": "hibiki-mlx-dc2cf5a5@80.safetensors",
    "mimi_name": "mimi-dbaa9758@125.safetensors",
    "tokenizer_name": "tokenizer_spm_48k_multi6_2.model",
}


class _Recorded(App):
    """App whose model factory keeps the resolved models it is given."""

    def __init__(self, qtbot, tmp_path: Path) -> None:
        self.resolved: list = []
        super().__init__(qtbot, tmp_path, folder=False)

    def factory(self, files, temperature, persona=None):
        self.resolved.append(files)
        return ScriptModel


def _pick(a: App, key: str) -> None:
    combo = a.window.voice_combo
    combo.setCurrentIndex(combo.findData(key))  # what choosing the entry in the list does


def test_the_picker_offers_every_family_repository_release_knows() -> None:
    assert set(FAMILY) == {release.HIBIKI_REPO, *release.FAMILY_REPOS}


def test_hibiki_from_the_picker_downloads_through_the_hub_and_translates(qtbot, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(memory, "available_bytes", lambda: None)  # the preflight: memory unknown, no refusal
    names = {HIBIKI_CONFIG[k] for k in ("moshi_name", "mimi_name", "tokenizer_name")}
    fake = install_fake_hub(monkeypatch, tmp_path / "cache", {release.HIBIKI_REPO: names | {hub.CONFIG_FILE}})
    fake.configs[release.HIBIKI_REPO] = HIBIKI_CONFIG
    a = _Recorded(qtbot, tmp_path)
    w = a.window
    _pick(a, release.HIBIKI_REPO)
    assert a.settings.hub_repo == release.HIBIKI_REPO
    assert not w.precision_combo.isEnabled() and not w.persona_box.isEnabled() and not w.user_check.isEnabled()
    w.start_button.click()
    a.wait_state(c.RUNNING, timeout=WAIT_MS)
    (model,) = a.resolved
    assert model.files.source == release.HIBIKI_REPO and model.kind == "hibiki"  # Translate mode
    assert model.label == f"hibiki-1b-mlx-bf16 · {TRANSLATE}"
    assert {n for r, n, _ in fake.downloads if r == release.HIBIKI_REPO} == names | {hub.CONFIG_FILE}
    w.start_button.click()
    a.wait_state(c.READY)
    a.close()

    b = App(qtbot, tmp_path, folder=False)  # the same settings file
    assert b.window.voice_combo.currentData() == release.HIBIKI_REPO, "remembered"
    _pick(b, "moshika")
    assert b.settings.hub_repo == "" and b.settings.voice == "moshika" and b.window.precision_combo.isEnabled()
    b.close()


def test_personaplex_from_the_picker_opens_the_persona_box_and_a_gated_repository_is_said_once(
    qtbot, tmp_path: Path, monkeypatch
) -> None:
    install_fake_hub(monkeypatch, tmp_path / "cache", {})
    import httpx2

    def gated(repo_id: str, **kw):
        raise errors.GatedRepoError("403 gated", response=httpx2.Response(403, request=httpx2.Request("GET", "u")))

    monkeypatch.setattr(huggingface_hub, "list_repo_files", gated)
    a = _Recorded(qtbot, tmp_path)
    w = a.window
    _pick(a, release.PERSONAPLEX_REPO)
    assert w.persona_box.isEnabled() and w.persona_voice_combo.currentData() == release.DEFAULT_PERSONA_VOICE
    assert [w.persona_voice_combo.itemData(i) for i in range(len(release.PERSONA_VOICES))] == list(
        release.PERSONA_VOICES
    )
    assert not w.user_check.isEnabled()  # run --transcribe-user refuses PersonaPlex too
    w.start_button.click()
    box = a.wait_error()
    repo = release.PERSONAPLEX_REPO
    assert len(a.dialogs.open_boxes) == 1 and not a.resolved and a.ctl.state == c.IDLE
    assert f"{repo} is a gated repository: accept its licence on https://huggingface.co/{repo}" in box.informativeText()
    assert "hf auth login" in box.informativeText()
    a.close()


def test_personaplex_from_the_hub_starts_with_a_released_voice_preset(qtbot, tmp_path: Path, monkeypatch) -> None:
    """The weights and voices.tgz come through the hub code (the download thread); Start reads the preset offline."""
    import tarfile

    from support.personaplex import ASSETS as PLEX
    from support.personaplex import personaplex_folder

    monkeypatch.setattr(memory, "available_bytes", lambda: None)
    repo_files = personaplex_folder(tmp_path / "published", voices=False)
    with tarfile.open(repo_files / release.VOICES_ARCHIVE, "w:gz") as tar:
        tar.add(PLEX / "voice.pt", arcname="voices/NATF2.pt")
    fake = install_fake_hub(monkeypatch, tmp_path / "cache", {})
    got: list[tuple[str, bool]] = []

    def listing(repo_id: str, **kw) -> list[str]:
        assert repo_id == release.PERSONAPLEX_REPO
        return sorted(p.name for p in repo_files.iterdir())

    def download(repo_id: str, filename: str, local_files_only: bool = False, **kw) -> str:
        got.append((filename, local_files_only))
        if local_files_only and (filename, False) not in got:  # the cache: only what was downloaded before
            raise errors.LocalEntryNotFoundError("not cached")
        return str(repo_files / filename)

    monkeypatch.setattr(huggingface_hub, "list_repo_files", listing)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    monkeypatch.setattr(fake, "try_to_load_from_cache", lambda *a, **k: None)
    a = _Recorded(qtbot, tmp_path)
    _pick(a, release.PERSONAPLEX_REPO)
    personas: list = []
    factory = a.presenter.model_factory
    a.presenter.model_factory = lambda files, temperature, persona=None: (
        personas.append(persona) or factory(files, temperature, persona)
    )
    a.window.start_button.click()
    a.wait_state(c.RUNNING, timeout=WAIT_MS)
    assert not a.dialogs.open_boxes, [b.informativeText() for b in a.dialogs.open_boxes]
    ((voice, role),) = personas
    assert voice.name == "NATF2" and release.DEFAULT_ROLE in repr(role), role
    assert (release.VOICES_ARCHIVE, False) in got  # fetched with the weights, on the download thread
    a.window.start_button.click()
    a.wait_state(c.READY)
    a.close()
