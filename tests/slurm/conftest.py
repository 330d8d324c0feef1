"""A real Slurm cluster for the tests in tests/slurm/ (the ``slurm`` marker).

The ``cluster`` fixture uses a cluster that answers ``sinfo``; if none does and
this is root on a machine with Slurm's Debian packages, it starts the local
single-node one (``slurm/local-cluster.sh start``) and leaves it running for
the next session (``slurm/local-cluster.sh stop`` ends it; other sessions may
be using it). Otherwise the tests skip and say why. ``.ci/slurm-setup.sh``
installs the packages and starts the cluster, so CI runs them.

    HPCMICRO_SLURM_TESTS=0       skip them
    HPCMICRO_SLURM_AUTOSTART=0   never start a cluster; skip if none answers

Every wait has a timeout; a job that fails or times out shows its log files,
``scontrol show job`` and the queue in the assertion message.
"""

from pathlib import Path

import pytest

from tests.slurm.slurmjobs import find_or_start_cluster


def pytest_configure(config):
    config.addinivalue_line("markers", "slurm: submits batch jobs to a real Slurm cluster (tests/slurm/)")


def pytest_collection_modifyitems(config, items):
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.slurm)


@pytest.fixture(scope="session")
def cluster():
    """A Slurm cluster that runs jobs (skips with the reason when there is none)."""
    return find_or_start_cluster()
