"""Third-party A2A checkers against the sample agents: a2a-lint (--live --strict, grade A) and a2a-proof contracts."""

import subprocess
from pathlib import Path

import pytest
import yaml

from tests.support.util import VENV_BIN, MeshUp, free_ports, write_mesh

SAMPLES = ["echo", "primes"]


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    directory = tmp_path_factory.mktemp("conformance")
    ports = dict(zip(SAMPLES, free_ports(len(SAMPLES)), strict=True))
    config = write_mesh(directory, {name: {"module": f"agents.{name}", "port": port} for name, port in ports.items()})
    with MeshUp(config) as up:
        up.wait_ready()
        yield {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}, directory
        assert up.stop() == 0


@pytest.mark.parametrize("agent", SAMPLES)
def test_a2a_lint_grade_a(samples, agent):
    urls, _ = samples
    result = subprocess.run([str(VENV_BIN / "a2a-lint"), urls[agent], "--live", "--strict"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "GRADE A — 0 error(s), 0 warning(s)" in result.stdout
    assert "message/stream delivered" in result.stdout


@pytest.mark.parametrize("transport", ["JSONRPC", "HTTP+JSON"])
@pytest.mark.parametrize("agent", SAMPLES)
def test_a2a_proof_contract(samples, agent, transport):
    urls, directory = samples
    contract = yaml.safe_load((Path(__file__).parent / "proof" / f"{agent}.yaml").read_text())
    contract["agent"]["url"] = urls[agent]
    path = directory / f"{agent}.yaml"
    path.write_text(yaml.safe_dump(contract))
    result = subprocess.run([str(VENV_BIN / "a2a-proof"), "run", str(path), "--transport", transport, "-v"],
                            capture_output=True, text=True, timeout=300, cwd=directory)
    assert result.returncode == 0, result.stdout + result.stderr
    scenarios = len(contract["scenarios"])
    assert f"Agent Card and {scenarios} scenarios passed" in result.stdout
