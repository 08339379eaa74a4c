"""Shared fixtures: a private PostgreSQL cluster on loopback, free ports, the project root."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.support.util import ROOT, free_port, wait_for_port

PG_BIN_CANDIDATES = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)


def _pg_bin(name: str) -> str:
    for directory in PG_BIN_CANDIDATES:
        if (directory / name).exists():
            return str(directory / name)
    found = shutil.which(name)
    if found:
        return found
    raise RuntimeError(
        f"PostgreSQL's {name} was not found: ./scripts/test installs Debian's postgresql package"
    )


@pytest.fixture(scope="session")
def postgres_url():
    """A throw-away PostgreSQL server on 127.0.0.1, started for this test session.

    PostgreSQL refuses to run as root, so as root the cluster belongs to the
    ``postgres`` system user that Debian's package creates.
    """
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    as_root = os.geteuid() == 0
    data = Path(tempfile.mkdtemp(prefix="mesh-pg-"))
    run_as: list[str] = ["runuser", "-u", "postgres", "--"] if as_root else []
    if as_root:
        shutil.chown(data, "postgres", "postgres")
    port = free_port()
    subprocess.run(
        [*run_as, initdb, "-D", str(data / "db"), "-A", "trust", "-U", "mesh", "--no-sync"],
        check=True, capture_output=True,
    )
    options = f"-p {port} -k {data} -c listen_addresses=127.0.0.1 -c fsync=off"
    subprocess.run(
        [*run_as, pg_ctl, "-D", str(data / "db"), "-o", options, "-l", str(data / "log"), "-w", "start"],
        check=True, capture_output=True,
    )
    try:
        wait_for_port(port)
        yield f"postgresql://mesh@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*run_as, pg_ctl, "-D", str(data / "db"), "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(data, ignore_errors=True)


@pytest.fixture
def project_root() -> Path:
    return ROOT
