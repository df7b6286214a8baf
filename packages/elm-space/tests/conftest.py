import pytest

from elm_space import preset


@pytest.fixture
def tiny():
    return preset("tiny")
