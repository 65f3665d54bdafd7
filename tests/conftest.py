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
