import pytest

from tests.multihost.cluster import EmulatedCluster, Unavailable


@pytest.fixture(scope="session")
def cluster(tmp_path_factory):
    """Three emulated hosts (a, b, c), built once for the session and always torn down."""
    c = EmulatedCluster(workdir=tmp_path_factory.mktemp("multihost"))
    try:
        c.setup()
    except Unavailable as exc:
        c.teardown()
        pytest.skip(f"no emulated hosts: {exc}")
    except BaseException:
        c.teardown()
        raise
    try:
        yield c
    finally:
        c.teardown()
    left = c.leftovers()
    assert not left, f"namespaces or links left behind: {left}"
