"""hub: repo listing, precision choice, local folders, explicit files, offline messages (no network)."""

from __future__ import annotations

from pathlib import Path

import huggingface_hub
import pytest
from huggingface_hub import errors

from moshi_mlx.errors import CheckpointError, ConfigError, OfflineError, Setting
from moshi_mlx.loading import hub
from support.fake_hub import FakeHub, install_fake_hub

Q4 = {"model.q4.safetensors", hub.MIMI_FILE, hub.TOKENIZER_FILE, "README.md"}


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    def make(repos: dict[str, set[str]], online: bool = True, cached=(), offline_env: bool = False) -> FakeHub:
        return install_fake_hub(monkeypatch, tmp_path / "cache", repos, online, cached, offline_env)

    return make


def test_default_repo_is_q4_and_files_are_downloaded(fake) -> None:
    f = fake({"kyutai/moshiko-mlx-q4": Q4 | {hub.CONFIG_FILE}})
    files = hub.resolve_model_files()
    assert files.source == "kyutai/moshiko-mlx-q4" and files.quant == 4
    assert files.moshi.name == "model.q4.safetensors" and files.mimi.name == hub.MIMI_FILE
    assert files.tokenizer.name == hub.TOKENIZER_FILE and files.config is not None
    assert all(not offline for _, _, offline in f.downloads)


def test_q_picks_the_kyutai_repo_and_the_file(fake) -> None:
    fake({"kyutai/moshiko-mlx-q8": {"model.q8.safetensors", hub.MIMI_FILE, hub.TOKENIZER_FILE}})
    files = hub.resolve_model_files(quant=8)
    assert (files.source, files.quant, files.moshi.name, files.config) == (
        "kyutai/moshiko-mlx-q8",
        8,
        "model.q8.safetensors",
        None,
    )
    assert hub.default_repo(None, "moshika") == "kyutai/moshika-mlx-bf16"
    with pytest.raises(ConfigError, match="unknown voice"):
        hub.default_repo(4, "moshiku")
    with pytest.raises(ConfigError, match="must be 4 or 8 bits"):
        hub.resolve_model_files(quant=3)


def test_quantization_detected_from_the_listing(fake) -> None:
    fake(
        {
            "me/bf16": {"model.safetensors", hub.MIMI_FILE, hub.TOKENIZER_FILE},
            "me/both": {"model.q8.safetensors", "model.q4.safetensors", hub.MIMI_FILE, hub.TOKENIZER_FILE},
        }
    )
    assert hub.resolve_model_files("me/bf16").quant is None
    assert hub.resolve_model_files("me/both").quant == 4
    assert hub.resolve_model_files("me/both", quant=8).moshi.name == "model.q8.safetensors"
    with pytest.raises(CheckpointError, match=r"me/bf16 has no 4-bit model.*it has: bf16 \(model.safetensors\)"):
        hub.resolve_model_files("me/bf16", quant=4)


def test_missing_repo_is_a_clear_error(fake) -> None:
    fake({})
    with pytest.raises(CheckpointError, match="'kyutai/nope' not found"):
        hub.resolve_model_files("kyutai/nope")


def test_offline_without_cache_names_files_and_flags(fake, monkeypatch) -> None:
    fake({"kyutai/moshiko-mlx-q4": Q4}, online=False)
    with pytest.raises(OfflineError) as e:
        hub.resolve_model_files()
    msg = str(e.value)
    for needed in ("model.q4.safetensors", hub.MIMI_FILE, hub.TOKENIZER_FILE, "cannot be reached"):
        assert needed in msg, needed
    assert e.value.hint is Setting.MODEL_FILES and "--" not in msg  # the front end says how to name files
    fake({"kyutai/moshiko-mlx-q4": Q4}, online=True, offline_env=True)
    with pytest.raises(OfflineError, match="HF_HUB_OFFLINE=1"):
        hub.resolve_model_files()


def test_offline_with_cache_uses_it(fake) -> None:
    repo = "kyutai/moshiko-mlx-q4"
    f = fake(
        {repo: Q4},
        online=False,
        cached={(repo, "model.q4.safetensors"), (repo, hub.MIMI_FILE), (repo, hub.TOKENIZER_FILE)},
    )
    files = hub.resolve_model_files()
    assert files.quant == 4 and all(offline for _, _, offline in f.downloads)
    # partly cached: the message names only what is missing
    fake({repo: Q4}, online=False, cached={(repo, "model.q4.safetensors")})
    with pytest.raises(OfflineError, match=f"{hub.MIMI_FILE}, {hub.TOKENIZER_FILE}"):
        hub.resolve_model_files()


def test_local_folder_from_the_quantizer(tmp_path: Path, fake) -> None:
    fake({})
    folder = tmp_path / "my-q8"
    folder.mkdir()
    for name in ("model.q8.safetensors", hub.MIMI_FILE, hub.TOKENIZER_FILE, hub.CONFIG_FILE):
        (folder / name).write_text("{}" if name == hub.CONFIG_FILE else "x")
    files = hub.resolve_model_files(str(folder))
    assert (files.quant, files.moshi, files.config, files.source) == (
        8,
        folder / "model.q8.safetensors",
        folder / "config.json",
        str(folder),
    )
    with pytest.raises(CheckpointError, match="has no 4-bit model"):
        hub.resolve_model_files(folder, quant=4)
    (folder / hub.MIMI_FILE).unlink()
    with pytest.raises(CheckpointError, match=f"has no {hub.MIMI_FILE}: add it there$") as e:
        hub.resolve_model_files(folder)
    assert e.value.hint is Setting.MODEL_FILES


def test_explicit_files_need_no_hub(tmp_path: Path, fake, monkeypatch) -> None:
    f = fake({}, online=False)
    paths = {}
    for key, name in (
        ("moshi_weight", "model.q8.safetensors"),
        ("mimi_weight", "mimi.safetensors"),
        ("tokenizer", "tok.model"),
    ):
        paths[key] = tmp_path / name
        paths[key].write_text("x")
    files = hub.resolve_model_files(**paths)
    assert files.quant == 8 and files.source == "local files" and not f.downloads
    with pytest.raises(CheckpointError, match="does not exist"):
        hub.resolve_model_files(**{**paths, "tokenizer": tmp_path / "missing.model"})


def test_hf_uri_for_one_file_and_override(fake) -> None:
    f = fake({"kyutai/moshiko-mlx-q4": Q4, "someone/tok": {"spm.model"}})
    files = hub.resolve_model_files(tokenizer="hf://someone/tok/spm.model")
    assert files.tokenizer.name == "spm.model"
    assert ("kyutai/moshiko-mlx-q4", hub.TOKENIZER_FILE, False) not in f.downloads
    with pytest.raises(ConfigError, match="hf://owner/repo/file"):
        hub.resolve_model_files(tokenizer="hf://justrepo")


def test_an_hf_file_is_taken_from_the_cache_alone_when_the_hub_will_not_be_asked(fake, tmp_path: Path) -> None:
    """hf://owner/repo/file asked the hub even with no network (the hub client retries for ~25 s) or with only
    cached files wanted: now the quick probe decides, as for a repository, and the cache answers at once."""
    local = {"moshi_weight": tmp_path / "model.q4.safetensors", "mimi_weight": tmp_path / "mimi.safetensors"}
    for p in local.values():
        p.write_text("x")
    f = fake({"someone/tok": {"spm.model"}}, online=False, cached={("someone/tok", "spm.model")})
    files = hub.resolve_model_files(tokenizer="hf://someone/tok/spm.model", **local)
    assert files.tokenizer.name == "spm.model" and f.downloads == [("someone/tok", "spm.model", True)]
    with pytest.raises(OfflineError, match="cannot get other.model from someone/tok: the hub cannot be reached"):
        hub.resolve_model_files(tokenizer="hf://someone/tok/other.model", **local)
    f = fake({"someone/tok": {"spm.model"}}, cached={("someone/tok", "spm.model")})  # online, cached files wanted
    hub.resolve_model_files(tokenizer="hf://someone/tok/spm.model", local_only=True, **local)
    assert f.downloads == [("someone/tok", "spm.model", True)]


def test_repo_config_names_are_followed(fake) -> None:
    """A config.json naming other files (as Kyutai's loaders allow) decides what is downloaded."""
    repo = "someone/moshi-finetune"
    f = fake({repo: {"model.q4.safetensors", "mimi.safetensors", "tok.model", "mimi.json", hub.CONFIG_FILE}})
    f.configs[repo] = {"dim": 8, "mimi_name": "mimi.safetensors", "tokenizer_name": "tok.model"}
    f.configs[repo]["mimi_config_name"] = "mimi.json"
    files = hub.resolve_model_files(repo)
    assert (files.mimi.name, files.tokenizer.name, files.mimi_config.name) == (
        "mimi.safetensors",
        "tok.model",
        "mimi.json",
    )


def test_malformed_config_json_is_a_clear_error(tmp_path: Path, fake) -> None:
    fake({})
    for name in ("model.q4.safetensors", hub.MIMI_FILE, hub.TOKENIZER_FILE):
        (tmp_path / name).write_text("x")
    (tmp_path / hub.CONFIG_FILE).write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        hub.resolve_model_files(str(tmp_path))


def test_unreachable_hub_is_detected_quickly(monkeypatch) -> None:
    import time

    monkeypatch.setenv("HF_ENDPOINT", "http://moshi-test.invalid")
    t0 = time.monotonic()
    assert "cannot be reached" in hub._hub_unreachable()
    assert time.monotonic() - t0 < 6


@pytest.mark.parametrize("endpoint", ["notaurl", "huggingface.co", "https://"])
def test_an_endpoint_that_is_no_web_address_is_named(monkeypatch, endpoint: str) -> None:
    """HF_ENDPOINT without a host was replaced by huggingface.co, and the message blamed huggingface.co."""
    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    why = hub._hub_unreachable()
    assert why is not None and f"HF_ENDPOINT={endpoint}" in why and "https://huggingface.co" in why, why


def test_local_only_uses_the_cache_and_never_asks_the_hub(fake) -> None:
    repo = "kyutai/moshiko-mlx-q4"
    f = fake({repo: Q4}, cached={(repo, n) for n in Q4})
    files = hub.resolve_model_files(local_only=True)
    assert files.quant == 4 and all(offline for _, _, offline in f.downloads)
    fake({repo: Q4}, cached={(repo, "model.q4.safetensors")})
    with pytest.raises(OfflineError):
        hub.resolve_model_files(local_only=True)


def test_before_download_can_stop_the_lm_download_but_is_not_asked_for_cached_files(fake) -> None:
    from moshi_mlx.errors import MemoryBudgetError

    repo = "kyutai/moshiko-mlx-bf16"
    f = fake({repo: {"model.safetensors", hub.MIMI_FILE, hub.TOKENIZER_FILE}})
    asked = []

    def refuse(bits, config):
        asked.append((bits, config))
        raise MemoryBudgetError("too big")

    with pytest.raises(MemoryBudgetError):
        hub.resolve_model_files(repo, before_download=refuse)
    assert asked == [(None, None)] and f.downloads == []  # nothing fetched
    fake({repo: {"model.safetensors", hub.MIMI_FILE, hub.TOKENIZER_FILE}}, cached={(repo, "model.safetensors")})
    asked.clear()
    hub.resolve_model_files(repo, before_download=refuse)
    assert asked == []  # already here: load_lm checks memory itself


def test_a_gated_repository_says_to_accept_its_licence(fake, monkeypatch) -> None:
    """kyutai/*-rl-seamless and nvidia/personaplex-7b-v1 are gated: the hub answers 401/403 until accepted."""
    import httpx2

    def gated(repo_id: str, **kw):
        raise errors.GatedRepoError("403 gated", response=httpx2.Response(403, request=httpx2.Request("GET", "u")))

    fake({})
    monkeypatch.setattr(huggingface_hub, "list_repo_files", gated)
    for repo in ("kyutai/moshika-rl-seamless", "nvidia/personaplex-7b-v1"):
        with pytest.raises(
            CheckpointError,
            match=f"{repo} is a gated repository: accept its licence on https://huggingface.co/{repo}.*hf auth login",
        ):
            hub.resolve_model_files(repo)
    # as the hub gates them: the file list is public, the files are refused (config.json comes first)
    family = {"model.safetensors", hub.MIMI_FILE, hub.TOKENIZER_FILE, hub.CONFIG_FILE}
    fake({repo: family for repo in ("kyutai/personaplex-rl-seamless", "nvidia/personaplex-7b-v1")})
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", lambda repo_id, filename, **kw: gated(repo_id))
    for repo in ("kyutai/personaplex-rl-seamless", "nvidia/personaplex-7b-v1"):
        with pytest.raises(CheckpointError, match=f"^{repo} is a gated repository: accept its licence") as e:
            hub.resolve_model_files(repo)
        assert "\n" not in str(e.value)


def test_personaplex_voices_come_from_the_repositorys_archive(fake, monkeypatch, tmp_path: Path) -> None:
    import tarfile

    from moshi_mlx.release import VOICES_ARCHIVE

    preset = Path(__file__).resolve().parents[1] / "assets" / "personaplex" / "voice.pt"
    f = fake({"nvidia/personaplex-7b-v1": {"model.safetensors", hub.MIMI_FILE, hub.TOKENIZER_FILE, VOICES_ARCHIVE}})
    plain = f.hf_hub_download

    def download(repo_id: str, filename: str, **kw) -> str:
        path = Path(plain(repo_id, filename, **kw))
        if filename == VOICES_ARCHIVE:
            with tarfile.open(path, "w:gz") as tar:
                tar.add(preset, arcname="voices/VARM3.pt")
        return str(path)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    files = hub.resolve_model_files("nvidia/personaplex-7b-v1")
    assert files.quant is None and files.moshi.name == "model.safetensors"
    folder = hub.voices_folder(files)
    assert folder is not None and sorted(p.name for p in folder.iterdir()) == ["VARM3.pt"]
    fake({"kyutai/moshiko-mlx-q4": Q4})  # a repository without presets
    assert hub.voices_folder(hub.resolve_model_files("kyutai/moshiko-mlx-q4")) is None


def test_a_family_release_too_big_to_download_says_how_to_make_the_4_bit_weights(fake) -> None:
    from moshi_mlx.errors import MemoryBudgetError

    repo = "kyutai/moshika-rl-seamless"
    f = fake({repo: {"model.safetensors", hub.MIMI_FILE, hub.TOKENIZER_FILE, hub.CONFIG_FILE}})

    def refuse(bits, config):
        raise MemoryBudgetError(
            "The bf16 Moshi model needs about 15.8 GiB. Use the 4-bit weights.", hint=Setting.PRECISION
        )

    with pytest.raises(MemoryBudgetError, match="holds only bf16 PyTorch weights: make 4-bit ones.*quantize") as e:
        hub.resolve_model_files(repo, before_download=refuse)
    assert e.value.hint is None  # not "-q 4": there is no 4-bit repository of it
    assert [d for d in f.downloads if d[1] == "model.safetensors"] == []


HIBIKI = {  # kyutai/hibiki-1b-mlx-bf16 as published: the config names every file
    hub.CONFIG_FILE: {
        "model_type": "hibiki",
        "moshi_name": "hibiki-mlx-dc2cf5a5@80.safetensors",
        "mimi_name": "mimi-dbaa9758@125.safetensors",
        "tokenizer_name": "tokenizer_spm_48k_multi6_2.model",
    },
}


def _hibiki_hub(fake, monkeypatch, config: dict, **kw) -> FakeHub:
    repo = "kyutai/hibiki-1b-mlx-bf16"
    names = {config.get(k) for k in ("moshi_name", "mimi_name", "tokenizer_name")} - {None}
    f = fake({repo: {hub.CONFIG_FILE, "README.md", *names}}, **kw)
    f.configs[repo] = config
    return f


def test_a_repository_naming_its_lm_file_is_followed_online_and_offline(fake, monkeypatch) -> None:
    config = HIBIKI[hub.CONFIG_FILE]
    f = _hibiki_hub(fake, monkeypatch, config)
    asked = []
    files = hub.resolve_model_files("kyutai/hibiki-1b-mlx-bf16", before_download=lambda b, c: asked.append(c))
    assert (files.moshi.name, files.mimi.name, files.tokenizer.name) == tuple(
        config[k] for k in ("moshi_name", "mimi_name", "tokenizer_name")
    )
    assert asked and asked[0].name == hub.CONFIG_FILE  # the memory check saw the config before the LM download
    assert [n for _, n, _ in f.downloads][0] == hub.CONFIG_FILE
    repo = "kyutai/hibiki-1b-mlx-bf16"
    cached = {(repo, hub.CONFIG_FILE)}
    _hibiki_hub(fake, monkeypatch, config, online=False, cached=cached)
    with pytest.raises(OfflineError, match="hibiki-mlx-dc2cf5a5@80.safetensors, mimi-dbaa9758@125"):
        hub.resolve_model_files(repo)
    _hibiki_hub(
        fake,
        monkeypatch,
        config,
        online=False,
        cached=cached | {(repo, config[k]) for k in ("moshi_name", "mimi_name", "tokenizer_name")},
    )
    assert hub.resolve_model_files(repo).moshi.name == config["moshi_name"]


def test_a_repository_of_another_member_is_refused_before_its_weights_are_downloaded(fake, monkeypatch) -> None:
    f = _hibiki_hub(fake, monkeypatch, {"tts_config": {"audio_delay": 1.28}, "moshi_name": "dsm_tts.safetensors"})
    with pytest.raises(ConfigError, match="its tts_config makes it Kyutai's TTS"):
        hub.resolve_model_files("kyutai/hibiki-1b-mlx-bf16")
    assert [n for _, n, _ in f.downloads] == [hub.CONFIG_FILE]


def test_an_stt_release_resolves_by_its_config_names_online_and_from_the_cache(fake) -> None:
    """kyutai/stt-1b-en_fr: its config.json names its Mimi and tokenizer files (Kyutai's loaders read them)."""
    repo = "kyutai/stt-1b-en_fr"
    names = {"model.safetensors", "mimi-pytorch-e351c8d8@125.safetensors", "tokenizer_en_fr_audio_8000.model"}
    config = {
        "model_type": "stt",
        "mimi_name": "mimi-pytorch-e351c8d8@125.safetensors",
        "tokenizer_name": "tokenizer_en_fr_audio_8000.model",
    }
    for online in (True, False):
        f = fake(
            {repo: names | {hub.CONFIG_FILE}}, online=online, cached={(repo, n) for n in names | {hub.CONFIG_FILE}}
        )
        f.configs[repo] = config
        files = hub.resolve_model_files(repo)
        assert (files.moshi.name, files.mimi.name, files.tokenizer.name) == (
            "model.safetensors",
            "mimi-pytorch-e351c8d8@125.safetensors",
            "tokenizer_en_fr_audio_8000.model",
        )
        assert files.quant is None


def test_a_huggingface_hub_without_progress_bar_classes_still_downloads(fake, monkeypatch) -> None:
    """huggingface_hub before 1.1 (the 0.x line Kyutai's `moshi` pins) has no tqdm_class in hf_hub_download:
    the progress bar the CLI and the app hand over must not turn every download into a TypeError. Where it
    is taken, it is handed over."""
    from tqdm.auto import tqdm

    f = fake({"kyutai/moshiko-mlx-q4": Q4})

    def hf_hub_download_0x(repo_id, filename, *, revision=None, cache_dir=None, local_files_only=False, token=None):
        return f.hf_hub_download(repo_id, filename, local_files_only=local_files_only)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", hf_hub_download_0x)
    files = hub.resolve_model_files("kyutai/moshiko-mlx-q4", tqdm_class=tqdm)
    assert files.moshi.name == "model.q4.safetensors" and len(f.downloads) == 3
    bars = []

    def hf_hub_download_1x(repo_id, filename, *, local_files_only=False, tqdm_class=None):
        bars.append(tqdm_class)
        return f.hf_hub_download(repo_id, filename, local_files_only=local_files_only)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", hf_hub_download_1x)
    hub.resolve_model_files("kyutai/moshiko-mlx-q4", tqdm_class=tqdm)
    assert bars == [tqdm] * 3


def test_offline_and_not_cached_names_the_files_the_release_has(fake) -> None:
    """A release not in the cache, offline: the files named are those of that repository (what a user would
    fetch or pass), never the default repository's model.q4.safetensors."""
    moshi = {hub.MIMI_FILE, hub.TOKENIZER_FILE}
    for repo, lm in (
        ("kyutai/moshika-mlx-q8", "model.q8.safetensors"),
        ("kyutai/moshiko-mlx-bf16", "model.safetensors"),
        ("kyutai/moshiko-pytorch-bf16", "model.safetensors"),
    ):
        fake({repo: moshi | {lm}}, online=False)
        with pytest.raises(OfflineError) as e:
            hub.resolve_model_files(repo)
        assert f"cannot get {lm}, {hub.MIMI_FILE}, {hub.TOKENIZER_FILE} from {repo}" in str(e.value), repo
    # a release whose config.json names its files (Hibiki, STT, PersonaPlex): that file comes first
    for repo in ("kyutai/hibiki-1b-mlx-bf16", "kyutai/stt-1b-en_fr-mlx", "nvidia/personaplex-7b-v1"):
        fake({repo: {hub.CONFIG_FILE, "model.safetensors"}}, online=False)
        with pytest.raises(OfflineError) as e:
            hub.resolve_model_files(repo)
        assert f"cannot get {hub.CONFIG_FILE} and the model files it names from {repo}" in str(e.value), repo
        assert "model.q4" not in str(e.value)
    # its config.json cached (it names the files): they are named
    repo, mimi = "kyutai/stt-1b-en_fr-mlx", "mimi-pytorch-e351c8d8@125.safetensors"
    f = fake({repo: {hub.CONFIG_FILE}}, online=False, cached={(repo, hub.CONFIG_FILE)})
    f.configs[repo] = {"model_type": "stt", "mimi_name": mimi, "tokenizer_name": "t.model"}
    with pytest.raises(OfflineError, match=f"cannot get model.safetensors, {mimi}, t.model from {repo}"):
        hub.resolve_model_files(repo)
