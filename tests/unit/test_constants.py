"""hpcmicro.constants is the one definition: the engine implements its names, and the
text that cannot import it (docs, batch scripts) says the same."""

from pathlib import Path

from hpcmicro.constants import DEVICES, MPICH_ENV, OP_NAMES, POLICY_NAMES

REPO = Path(__file__).resolve().parents[2]


def test_names_match_the_engine():
    from hpcmicro.engine.combine import OPS
    from hpcmicro.engine.policies import POLICIES
    from hpcmicro.mpi.devices import DEVICES as BACKEND_DEVICES

    assert set(OP_NAMES) == set(OPS)
    assert set(POLICY_NAMES) == set(POLICIES)
    assert tuple(BACKEND_DEVICES) == DEVICES


def test_benchmarks_run_hpcmicro_under_every_policy():
    from benchmarks.common import HPCMICRO_SYSTEMS, SYSTEMS

    assert set(HPCMICRO_SYSTEMS) == set(POLICY_NAMES) and HPCMICRO_SYSTEMS[0] == "steal"  # the default first
    assert set(SYSTEMS) - set(HPCMICRO_SYSTEMS) == {"executor", "dask"}


def test_docs_and_scripts_show_the_mpich_settings_as_defined():
    line = " ".join(f"{name}={value}" for name, value in MPICH_ENV.items())
    for path in [REPO / "README.md", REPO / "docs" / "slurm.md", *sorted((REPO / "slurm").glob("*.sbatch"))]:
        text = path.read_text().replace("`", "")
        assert line in text, f"{path.relative_to(REPO)} does not show `{line}` (hpcmicro.constants.MPICH_ENV)"
