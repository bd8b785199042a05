import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent
SHARED_FIXTURES = REPO.parent / "shared" / "fixtures"


@pytest.fixture
def shared_fixtures() -> pathlib.Path:
    if not SHARED_FIXTURES.is_dir():
        pytest.skip("../shared/fixtures is not beside the repository")
    return SHARED_FIXTURES


@pytest.fixture
def http_server():
    from tests.loopback import LoopbackServer

    with LoopbackServer() as server:
        yield server
