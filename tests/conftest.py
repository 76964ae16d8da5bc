"""Shared test settings: one torch thread (tiny models on a busy 2-core machine run faster without spin-waiting
thread pools), the store, data and cache directories pointed away from the user's, and no operator settings
inherited from the environment."""

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def isolated_paths(tmp_path, monkeypatch):
    monkeypatch.setenv("EXPLORER_STORE", str(tmp_path / "default-store.sqlite"))
    monkeypatch.setenv("EXPLORER_DATA_DIR", str(tmp_path / "no-data"))
    monkeypatch.setenv("EXPLORER_CACHE_DIR", str(tmp_path / "cache"))
    for name in ("EXPLORER_DATA_ROOTS", "EXPLORER_HOSTED", "EXPLORER_MEMORY_LIMIT", "EXPLORER_MAX_JOB_SECONDS",
                 "EXPLORER_MAX_QUEUED_PER_OWNER", "EXPLORER_MAX_QUEUED", "EXPLORER_CHECKPOINT_SECONDS",
                 "EXPLORER_OWNER_KEY", "EXPLORER_PUBLIC_URL"):
        monkeypatch.delenv(name, raising=False)
