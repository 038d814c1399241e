"""Finding model files: Hugging Face repositories, local folders, explicit paths. The only module that downloads.

A Kyutai MLX repository or a folder written by our quantizer holds the files `release.py` lists.
The precision available is read from the file list; `quant` (4, 8) picks among them.
"""

from __future__ import annotations

import functools
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from urllib.parse import urlparse

from ..config import read_json_object
from ..config.lm import model_kind
from ..errors import CheckpointError, ConfigError, MemoryBudgetError, OfflineError, Setting, require_file
from ..release import (
    CONFIG_FILE,
    DEFAULT_BITS,
    DEFAULT_REPO,
    DEFAULT_VOICE,
    FAMILY_REPOS,
    MIMI_FILE,
    MOSHI_FILES,
    TOKENIZER_FILE,
    VOICES,
    VOICES_ARCHIVE,
    mlx_repo,
    precision_label,
    usual_lm_file,
)

# Keys of a repository's config.json that name files rather than describe the LM (Kyutai's loaders read them).
REPO_FILE_KEYS = ("moshi_name", "mimi_name", "tokenizer_name", "mimi_config_name", "lora_name", "model_id")


@dataclass(frozen=True)
class ModelFiles:
    moshi: Path
    mimi: Path
    tokenizer: Path
    config: Path | None
    quant: int | None  # 4, 8, or None for bf16, as named by the file (the loader checks the shapes)
    source: str  # repo id or folder the files came from
    mimi_config: Path | None = None  # Kyutai-schema Mimi config, when the repository names one


def read_repo_config(path: str | os.PathLike) -> tuple[dict, dict]:
    """Split a repository's config.json into (the LM config in Kyutai's schema, its file-name keys)."""
    raw = read_json_object(path)
    files = {k: raw.pop(k) for k in REPO_FILE_KEYS if k in raw}
    return raw, files


def _names(config: Path | None) -> dict:
    """The file names a repository's config gives; a model of the family this port does not run is refused
    here, before its weights are looked for or downloaded."""
    if config is None:
        return {}
    raw, names = read_repo_config(config)
    model_kind(raw, str(config))
    return names


MODEL_SOURCE_HELP = (
    "a local model is a folder holding config.json and model*.safetensors; "
    f"a hub model is owner/name (e.g. {DEFAULT_REPO})"
)


def is_repo_id(s: str) -> bool:
    """owner/name as the Hugging Face hub spells a repository (not a path, a bare name or a URL)."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    if s.count("/") != 1 or s.startswith(("~", ".")):
        return False
    try:
        validate_repo_id(s)
    except HFValidationError:
        return False
    return True


def _not_a_model_source(source: str) -> CheckpointError:
    """Why `source` (a model folder or repo id, as given) is neither: a file, a missing folder, a malformed id."""
    p = Path(source).expanduser()
    if p.is_file():
        return CheckpointError(f"{source} is a file, not a model folder: {MODEL_SOURCE_HELP}", hint=Setting.MODEL_FILES)
    if all(c.isalnum() or c in "/\\.~_-:" for c in source):  # a path that is not there
        return CheckpointError(f"no folder {source}: {MODEL_SOURCE_HELP}")
    return CheckpointError(f"{source!r} is neither a folder nor a Hugging Face repo id: {MODEL_SOURCE_HELP}")


def climbs_out(name: str) -> bool:
    """True for a file name that would leave its folder or repository: absolute, a drive, or a `..` step."""
    posix = PurePosixPath(name.replace("\\", "/"))
    return not name or posix.is_absolute() or ".." in posix.parts or bool(PureWindowsPath(name).drive)


def _outside(name: str, key: str | None, where: str, container: str = "model folder") -> CheckpointError:
    if not name:  # what climbs_out also refuses, but it leaves nothing: say so
        return CheckpointError(
            f"{where}: {key or 'a file name'} is empty; name a file in the {container}, or leave the key out "
            "for the usual file."
        )
    named = f"{key} {name!r}" if key else repr(name)
    return CheckpointError(
        f"{where}: {named} points outside the {container}; only files inside it are read (a model may come from "
        f"someone else). Put the file in the {container} and name it there."
    )


def folder_file(folder: Path, name: str, key: str | None = None) -> Path:
    """`folder / name` for a name a config gives (`key`) or a usual one; CheckpointError unless it is inside
    `folder`: no absolute path, no `..`, no link to a file elsewhere (a Hugging Face cache snapshot's links
    to its own blobs excepted)."""
    if climbs_out(name):
        raise _outside(name, key, str(folder))
    path = folder / name
    real, base = Path(os.path.realpath(path)), Path(os.path.realpath(folder))  # Path.resolve raises on a link loop
    in_cache = real.parent.name == "blobs" and real.parent.parent in base.parents
    if base not in real.parents and not in_cache:
        raise _outside(name, key, f"{folder} ({name} links to {real})")
    return path


def repo_file(repo: str, name: str, key: str | None = None) -> str:
    """A file name inside repository `repo` (given by its config's `key`); CheckpointError if it leaves it."""
    if climbs_out(name):
        raise _outside(name, key, repo, "repository")
    return name


def default_repo(quant: int | None = DEFAULT_BITS, voice: str = DEFAULT_VOICE) -> str:
    """Kyutai's MLX repository for a voice and precision (`kyutai/moshika-mlx-q8`...)."""
    if voice not in VOICES:
        raise ConfigError(f"unknown voice {voice!r}: choose one of {', '.join(VOICES)}")
    return mlx_repo(quant, voice)


def _offline() -> bool:
    import huggingface_hub

    # huggingface_hub reads HF_HUB_OFFLINE once, at import; the variable as it is now counts too
    check = getattr(huggingface_hub, "is_offline_mode", None)
    if check is not None and check():
        return True
    return os.environ.get("HF_HUB_OFFLINE", "0").upper() in ("1", "ON", "YES", "TRUE")


def hub_unavailable(local_only: bool = False) -> str | None:
    """Why the hub will not be asked (offline mode, only the cache wanted, host unreachable), or None.

    One quick probe, shared by every front end: the hub client would retry for ~25 s instead."""
    if _offline():
        return "offline mode (HF_HUB_OFFLINE=1)"
    return "only cached files were asked for" if local_only else _hub_unreachable()


def _hub_unreachable(timeout_s: float = 5.0) -> str | None:
    """Why the hub's host cannot be reached, or None. One TCP connection: the hub client itself
    retries for ~25 s (printing each retry) before giving up on a machine without network."""
    endpoint = os.environ.get("HF_ENDPOINT") or "https://huggingface.co"
    url = urlparse(endpoint)
    if not url.hostname or url.scheme not in ("http", "https"):  # the hub client would fail on it too, less clearly
        return f"HF_ENDPOINT={endpoint} is not a web address (e.g. https://huggingface.co): correct it or unset it"
    host, port = url.hostname, url.port or (80 if url.scheme == "http" else 443)
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return None
    except OSError as e:
        return f"the hub cannot be reached ({host}: {e.strerror or e})"


def _is_network_error(e: BaseException) -> bool:
    """True when the hub could not be asked (offline, no connection), not when it answered no."""
    from huggingface_hub import errors

    if isinstance(e, (errors.OfflineModeIsEnabled, errors.LocalEntryNotFoundError)):
        return True
    if isinstance(e, errors.HfHubHTTPError):  # the hub answered (missing, gated, server error)
        return False
    if isinstance(e, (ConnectionError, TimeoutError)):
        return True
    names = {c.__name__ for c in type(e).__mro__}  # httpx / requests transport errors
    return bool(
        names & {"ConnectError", "ConnectTimeout", "ReadTimeout", "TimeoutException", "NetworkError", "TransportError"}
    )


def _check_download(check: Callable, repo: str, bits: int | None, config: Path | None) -> None:
    """`check(bits, config)`; for a family release that has only bf16 PyTorch weights (no 4-bit repository to
    switch to), a refusal says how to make the 4-bit weights instead of naming another repository."""
    try:
        check(bits, config)
    except MemoryBudgetError as e:
        if repo not in FAMILY_REPOS:
            raise
        raise MemoryBudgetError(
            f"{e} {repo} holds only bf16 PyTorch weights: make 4-bit ones on a machine with the disk space, "
            "with the quantize tool (it reads one tensor at a time), and run the folder it writes."
        ) from None


def gated_message(repo: str) -> str:
    """What to do about a gated repository (the hub refuses its files until the licence is accepted)."""
    return (
        f"{repo} is a gated repository: accept its licence on https://huggingface.co/{repo} while logged in, "
        "then log in here with `hf auth login` (or set HF_TOKEN) and try again"
    )


def _cached(repo: str, filename: str) -> str | None:
    from huggingface_hub import try_to_load_from_cache

    path = try_to_load_from_cache(repo, filename)
    return path if isinstance(path, str) else None


def _repo_listing(repo: str, reason: str | None) -> tuple[set[str], str | None]:
    """Files of `repo`: from the hub, else (`reason`: why the hub will not be asked, `hub_unavailable`) those
    already cached. Second item: why the hub was not used."""
    import huggingface_hub
    from huggingface_hub import errors

    if reason is None:
        try:
            return set(huggingface_hub.list_repo_files(repo)), None
        except errors.GatedRepoError:
            raise CheckpointError(gated_message(repo), hint=Setting.MODEL_FILES) from None
        except (errors.RepositoryNotFoundError, errors.HFValidationError) as e:
            raise CheckpointError(
                f"model repository {repo!r} not found on Hugging Face ({type(e).__name__}); check the name, "
                f"e.g. {DEFAULT_REPO}, or pass a local folder"
            ) from None
        except Exception as e:  # noqa: BLE001 (only network failures fall back to the cache)
            if not _is_network_error(e):
                raise
            reason = f"the hub cannot be reached ({type(e).__name__}: {e})"
    wanted = [*MOSHI_FILES.values(), MIMI_FILE, TOKENIZER_FILE, CONFIG_FILE]
    return {f for f in wanted if _cached(repo, f) is not None}, reason


def _pick_moshi(listing: set[str], quant: int | None, quant_given: bool, where: str) -> tuple[str, int | None]:
    present = {q: f for q, f in MOSHI_FILES.items() if f in listing}
    if quant_given:
        if quant in present:
            return present[quant], quant
        have = ", ".join(f"{precision_label(q)} ({f})" for q, f in present.items()) or "none"
        want = precision_label(quant)
        raise CheckpointError(
            f"{where} has no {want} model ({MOSHI_FILES[quant]}); it has: {have}. "
            f"Use one of those, or the repository for that precision (e.g. {default_repo(quant)})."
        )
    for q in (4, 8, None):
        if q in present:
            return present[q], q
    raise CheckpointError(
        f"{where} holds no Moshi weights (one of {', '.join(MOSHI_FILES.values())})", hint=Setting.MODEL_FILES
    )


def _explicit(
    path: str | os.PathLike | None, what: str, tqdm_class, expected: str = "", unavailable: Callable = hub_unavailable
) -> Path | None:
    """A user-given file: a local path or hf://owner/repo/path/in/repo (from the cache alone when
    `unavailable()` says why the hub will not be asked: the hub client would retry for ~25 s)."""
    if path is None:
        return None
    s = str(path)
    if s.startswith("hf://"):
        parts = s[len("hf://") :].split("/")
        repo, name = "/".join(parts[:2]), "/".join(parts[2:])
        if len(parts) < 3 or not is_repo_id(repo):
            raise ConfigError(f"{what} {s!r}: write hf://owner/repo/file (owner/repo: a Hugging Face repository)")
        if climbs_out(name):
            raise ConfigError(f"{what} {s!r}: name a file inside the repository {repo} (no '..', no leading /)")
        return _download(repo, name, tqdm_class, unavailable())
    return require_file(Path(s).expanduser(), what, CheckpointError, expected)


def _takes_tqdm_class() -> bool:
    """Whether this huggingface_hub's hf_hub_download takes a progress bar class (1.1 and later): before, it
    shows its own bar, and the argument would fail every download with a TypeError."""
    import inspect

    import huggingface_hub

    try:
        params = inspect.signature(huggingface_hub.hf_hub_download).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == "tqdm_class" or p.kind is inspect.Parameter.VAR_KEYWORD for p in params)


def _download(repo: str, filename: str, tqdm_class, reason: str | None, needed: list[str] | None = None) -> Path:
    import huggingface_hub
    from huggingface_hub import errors

    offline = reason is not None
    try:
        kw = {"tqdm_class": tqdm_class} if tqdm_class is not None and _takes_tqdm_class() else {}
        return Path(huggingface_hub.hf_hub_download(repo, filename, local_files_only=offline, **kw))
    except Exception as e:  # noqa: BLE001 (sorted below into our errors)
        if not (offline or _is_network_error(e)):
            if isinstance(e, errors.GatedRepoError):
                raise CheckpointError(gated_message(repo), hint=Setting.MODEL_FILES) from None
            if isinstance(e, errors.EntryNotFoundError):
                raise CheckpointError(f"{repo} has no file {filename}") from None
            if isinstance(e, errors.HfHubHTTPError):
                raise CheckpointError(f"downloading {filename} from {repo} failed: {e}") from None
            raise
        why = reason or f"the hub cannot be reached ({type(e).__name__})"
        raise not_cached(repo, needed or [filename], why) from None


def not_cached(repo: str, needed: list[str], why: str) -> OfflineError:
    """The files of `repo` this run needs cannot be downloaded (`why`), and the cache lacks them."""
    return OfflineError(
        f"cannot get {', '.join(needed)} from {repo}: {why}, and they are not in the Hugging Face cache. "
        "Connect once to download them.",
        why,
        hint=Setting.MODEL_FILES,
    )


def resolve_model_files(
    hf_repo: str | os.PathLike | None = None,
    quant: int | None = None,
    *,
    moshi_weight=None,
    mimi_weight=None,
    tokenizer=None,
    config=None,
    tqdm_class: Callable | None = None,
    local_only: bool = False,
    before_download: Callable[[int | None, Path | None], None] | None = None,
) -> ModelFiles:
    """Finds (downloading when needed) every file a dialog needs.

    Args:
        hf_repo: Hugging Face repo id or local folder; default `kyutai/moshiko-mlx-q4`, or the
            Kyutai repo for `quant` when that is given.
        quant: 4 or 8 to pick `model.q{4,8}.safetensors`; None: the best one available
            (q4, then q8, then bf16).
        moshi_weight / mimi_weight / tokenizer / config: explicit files (path or hf://owner/repo/file)
            that override the repository's.
        tqdm_class: progress bar class handed to huggingface_hub (the app passes its own).
        local_only: use only files already in the Hugging Face cache (OfflineError if some are not).
        before_download: called with (bits, config path) before the LM weights of a repository are
            downloaded (not when cached); it may raise to stop, e.g. loading.memory.check_download_fits.

    Raises:
        OfflineError: files must be downloaded but the hub is unreachable or HF_HUB_OFFLINE=1.
        CheckpointError: a missing repository, file or precision.
    """
    if quant not in (None, 4, 8):
        raise ConfigError(
            f"the quantization must be 4 or 8 bits (got {quant}); leave it out for the repository's default"
        )
    quant_given = quant is not None
    unavailable = functools.cache(lambda: hub_unavailable(local_only))  # one probe, and only if the hub is needed
    explicit = {
        "moshi": _explicit(
            moshi_weight,
            "Moshi weights",
            tqdm_class,
            MOSHI_FILES[DEFAULT_BITS if quant is None else quant],
            unavailable,
        ),
        "mimi": _explicit(mimi_weight, "Mimi weights", tqdm_class, MIMI_FILE, unavailable),
        "tokenizer": _explicit(tokenizer, "tokenizer", tqdm_class, TOKENIZER_FILE, unavailable),
        "config": _explicit(config, "config", tqdm_class, CONFIG_FILE, unavailable),
    }
    if explicit["moshi"] is not None and explicit["mimi"] is not None and explicit["tokenizer"] is not None:
        q = next((k for k, f in MOSHI_FILES.items() if f == explicit["moshi"].name), quant)
        return ModelFiles(
            explicit["moshi"], explicit["mimi"], explicit["tokenizer"], explicit["config"], q, "local files"
        )

    folder = Path(hf_repo).expanduser() if hf_repo is not None else None
    if folder is not None and folder.is_dir():
        listing = {p.name for p in folder.iterdir() if p.is_file()}
        names: dict = {}

        def found(f: str, key: str | None = None) -> Path | None:
            path = folder_file(folder, f, key if key in names else None)
            if path.is_file():
                return path
            if path.is_symlink() and not path.exists():  # never read as "missing" either (a default config)
                raise CheckpointError(
                    f"{path} is a broken link (to {os.readlink(path)}): put the file itself there",
                    hint=Setting.MODEL_FILES,
                )
            if path.exists():  # a folder or pipe where a file belongs: never read as "missing"
                raise CheckpointError(f"{path} is not a file: put the file itself there", hint=Setting.MODEL_FILES)
            return None

        def local(f: str, key: str | None = None) -> Path:
            path = found(f, key)
            if path is None:
                raise CheckpointError(f"{folder} has no {f}: add it there", hint=Setting.MODEL_FILES)
            return path

        cfg = explicit["config"] or found(CONFIG_FILE)
        names = _names(cfg)
        if explicit["moshi"] is None and not any(f in listing for f in MOSHI_FILES.values()) and "moshi_name" in names:
            name, q = names["moshi_name"], quant
        elif explicit["moshi"] is None:
            name, q = _pick_moshi(listing, quant, quant_given, str(folder))
        else:
            name, q = "", quant
        return ModelFiles(
            explicit["moshi"] or local(name, key="moshi_name"),
            explicit["mimi"] or local(names.get("mimi_name", MIMI_FILE), key="mimi_name"),
            explicit["tokenizer"] or local(names.get("tokenizer_name", TOKENIZER_FILE), key="tokenizer_name"),
            cfg,
            q,
            str(folder),
            local(names["mimi_config_name"], key="mimi_config_name") if "mimi_config_name" in names else None,
        )
    if folder is not None and (folder.exists() or not is_repo_id(str(hf_repo))):  # a file, or a mistyped path
        raise _not_a_model_source(str(hf_repo))

    repo = str(hf_repo) if hf_repo is not None else (default_repo(quant) if quant_given else DEFAULT_REPO)
    listing, reason = _repo_listing(repo, unavailable())
    cfg = explicit["config"]
    if cfg is None and CONFIG_FILE in listing:
        cfg = _download(repo, CONFIG_FILE, tqdm_class, reason)
    names = {
        k: repo_file(repo, str(v), k) if k in ("mimi_name", "tokenizer_name", "mimi_config_name") else v
        for k, v in _names(cfg).items()
    }
    mimi_file, tokenizer_file = names.get("mimi_name", MIMI_FILE), names.get("tokenizer_name", TOKENIZER_FILE)
    named = repo_file(repo, str(names["moshi_name"]), "moshi_name") if "moshi_name" in names else None
    if named and not any(f in listing for f in MOSHI_FILES.values()) and (named in listing or _cached(repo, named)):
        listing.add(named)  # a repository naming its LM file (Hibiki's hibiki-mlx-dc2cf5a5@80.safetensors)
    if explicit["moshi"] is None and named in listing and not any(f in listing for f in MOSHI_FILES.values()):
        name, q = str(named), quant
        if before_download is not None and reason is None and _cached(repo, name) is None:
            before_download(q, cfg)
    elif explicit["moshi"] is None:
        if reason is not None and not any(f in listing for f in MOSHI_FILES.values()):
            lm = named or (MOSHI_FILES[quant] if quant_given else MOSHI_FILES[None] if cfg else usual_lm_file(repo))
            needed = [lm, mimi_file, tokenizer_file] if lm else [f"{CONFIG_FILE} and the model files it names"]
            raise not_cached(repo, needed, reason)
        name, q = _pick_moshi(listing, quant, quant_given, repo)
        if before_download is not None and reason is None and _cached(repo, name) is None:
            _check_download(before_download, repo, q, cfg)
    else:
        name, q = "", quant
    needed = [
        f
        for f, have in (
            (name, explicit["moshi"]),
            (mimi_file, explicit["mimi"]),
            (tokenizer_file, explicit["tokenizer"]),
        )
        if f and have is None
    ]
    got = {f: _download(repo, f, tqdm_class, reason, needed) for f in needed}
    mimi_config = names.get("mimi_config_name")
    return ModelFiles(
        explicit["moshi"] or got[name],
        explicit["mimi"] or got[mimi_file],
        explicit["tokenizer"] or got[tokenizer_file],
        cfg,
        q,
        repo,
        _download(repo, mimi_config, tqdm_class, reason) if mimi_config else None,
    )


def local_voices(folder: Path) -> Path | None:
    """A model folder's voice presets: its `voices/`, else its `voices.tgz` extracted once; None if neither."""
    from ..persona.voices import extract_voices

    if (folder / "voices").is_dir():
        return folder / "voices"
    return extract_voices(folder / VOICES_ARCHIVE) if (folder / VOICES_ARCHIVE).is_file() else None


def voices_folder(files: ModelFiles, tqdm_class: Callable | None = None, local_only: bool = False) -> Path | None:
    """PersonaPlex's voice presets for the model `files` came from: its `voices/` folder, or its `voices.tgz`
    (downloaded from the repository when needed, extracted once beside it); None when it has none (or the hub
    cannot be reached and the archive is not cached: a voice can still come from a file).
    `local_only`: only an archive already in the Hugging Face cache (no network: the app fetched it before)."""
    from ..persona.voices import extract_voices

    if Path(files.source).is_dir():
        return local_voices(Path(files.source))
    if not is_repo_id(files.source):
        return None
    try:
        archive = _download(files.source, VOICES_ARCHIVE, tqdm_class, hub_unavailable(local_only))
    except (CheckpointError, OfflineError):
        return None
    return extract_voices(archive)
