"""A stand-in for the network side of huggingface_hub (repositories, cache, offline), for hub and app tests."""

from __future__ import annotations

import json
from pathlib import Path

import huggingface_hub
from huggingface_hub import errors

from moshi_mlx.loading import hub


class FakeHub:
    """Stands in for the network side of huggingface_hub."""

    def __init__(
        self, tmp: Path, repos: dict[str, set[str]], online: bool = True, cached: set[tuple[str, str]] = frozenset()
    ):
        self.tmp, self.repos, self.online, self.cached = tmp, repos, online, set(cached)
        self.downloads: list[tuple[str, str, bool]] = []
        self.configs: dict[str, dict] = {}  # repo -> what its config.json holds ({} unless set)

    def list_repo_files(self, repo_id: str, **kw) -> list[str]:
        if not self.online:
            raise ConnectionError("Name or service not known")
        if repo_id not in self.repos:
            raise _repo_missing()
        return sorted(self.repos[repo_id])

    def hf_hub_download(self, repo_id: str, filename: str, local_files_only: bool = False, **kw) -> str:
        self.downloads.append((repo_id, filename, local_files_only))
        if local_files_only or not self.online:
            if (repo_id, filename) not in self.cached:
                raise errors.LocalEntryNotFoundError("not cached")
        elif filename not in self.repos.get(repo_id, set()):
            raise errors.EntryNotFoundError(f"{filename} not found")
        p = self.tmp / repo_id.replace("/", "--") / filename
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(self.configs.get(repo_id, {})) if filename == hub.CONFIG_FILE else "x")
        return str(p)

    def try_to_load_from_cache(self, repo_id: str, filename: str, **kw):
        return str(self.tmp / filename) if (repo_id, filename) in self.cached else None


def _repo_missing() -> Exception:
    class Missing(errors.RepositoryNotFoundError):
        def __init__(self) -> None:
            Exception.__init__(self, "404 repository not found")

    return Missing()


def install_fake_hub(
    monkeypatch, tmp: Path, repos: dict[str, set[str]], online: bool = True, cached=(), offline_env: bool = False
) -> FakeHub:
    """A FakeHub in place of huggingface_hub's network calls (and of the hub module's reachability probe)."""
    f = FakeHub(tmp, repos, online, set(cached))
    for name in ("list_repo_files", "hf_hub_download", "try_to_load_from_cache"):
        monkeypatch.setattr(huggingface_hub, name, getattr(f, name))
    monkeypatch.setattr(huggingface_hub, "is_offline_mode", lambda: offline_env)
    monkeypatch.setattr(hub, "_hub_unreachable", lambda: None if online else "the hub cannot be reached (test)")
    return f
