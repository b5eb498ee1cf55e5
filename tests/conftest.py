"""Fixtures shared by the suite. Helpers live in spancore/testing.py (shared with bench/)."""
from __future__ import annotations

import pytest

from spancore.testing import EXIF_SAMPLES, TEST_SERVER_ENV, running_server


@pytest.fixture(scope="session")
def exif_samples():
    if not EXIF_SAMPLES.is_dir():
        pytest.skip(f"shared data not found at {EXIF_SAMPLES} (set SPAN_SHARED_DATA)")
    return EXIF_SAMPLES


@pytest.fixture(scope="session")
def live_server_process():
    """One real `span serve` process (uvicorn, the committed model) for the whole session."""
    with running_server(TEST_SERVER_ENV) as server:
        yield server


@pytest.fixture(scope="session")
def live_server(live_server_process) -> str:
    """Base URL of the session's real server, e.g. http://127.0.0.1:54321."""
    return live_server_process.url
