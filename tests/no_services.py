"""For test modules that need none of the suite's services (a database and a broker per
module, librosa compiled for the session's workers): import these two, and they stand in
for conftest's autouse fixtures of the same names in that module."""

import pytest


@pytest.fixture(scope="module", autouse=True)
def module_services():
    yield None


@pytest.fixture(scope="session", autouse=True)
def librosa_compiled_first():
    yield None
