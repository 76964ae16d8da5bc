"""Shared test settings: one torch thread (tiny models on a busy 2-core machine run faster without spin-waiting
thread pools), and the store and data directory pointed away from the user's."""

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def isolated_paths(tmp_path, monkeypatch):
    monkeypatch.setenv("EXPLORER_STORE", str(tmp_path / "default-store.sqlite"))
    monkeypatch.setenv("EXPLORER_DATA_DIR", str(tmp_path / "no-data"))
