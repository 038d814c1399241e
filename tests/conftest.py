"""Fixtures for every test: seeded randomness, the assets folder, Qt offscreen. Helpers live in support/."""

from __future__ import annotations

import os
from pathlib import Path

import mlx.core as mx
import numpy as np
import pytest

from support import ASSETS

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


@pytest.fixture(autouse=True)
def _seed() -> None:
    mx.random.seed(1234)
    np.random.seed(1234)


@pytest.fixture
def assets() -> Path:
    return ASSETS
