"""mesh.yaml validation: `mesh check` on good and broken files, each error with file:line and key path.

The broken files are checked in-process (the CLI's own entry point, with its
stdout and stderr captured); the command itself runs as a process twice.
"""

import contextlib
import io
import os
import subprocess
import textwrap
from unittest import mock

import pytest

from mesh.config import AgentConfig
from tests.support.util import ROOT, VENV_BIN, run_cli

GOOD = """\
name: t
agents:
  echo:
    module: agents.echo
    port: 18101
"""


def check(tmp_path, text: str, env: dict | None = None):
    """`mesh check -c FILE` run by the CLI's main() in this process; returns the file and what it printed."""
    from mesh.cli.main import main

    path = tmp_path / "mesh.yaml"
    path.write_text(textwrap.dedent(text))
    out, err = io.StringIO(), io.StringIO()
    with mock.patch.dict(os.environ, env or {}), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["check", "-c", str(path)])
    return path, subprocess.CompletedProcess(["mesh", "check"], code, out.getvalue(), err.getvalue())


def test_default_mesh_is_valid():
    result = run_cli("check", "-c", str(ROOT / "mesh.yaml"))
    assert result.returncode == 0, result.stderr
    assert "valid" in result.stdout and "echo" in result.stdout and "primes" in result.stdout


def test_good_file(tmp_path):
    path, result = check(tmp_path, GOOD)
    assert result.returncode == 0, result.stderr
    assert "1 local agents (echo)" in result.stdout


@pytest.mark.parametrize(
    "text, expected",
    [
        ("agents:\n  echo: [unclosed\n", ":2: YAML syntax error"),
        (GOOD + "    prot: 3\n", ":6: agents.echo.prot: unknown key 'prot' (did you mean 'port'?)"),
        (GOOD.replace("18101", "not-a-port"), ":5: agents.echo.port: Input should be a valid integer"),
        (GOOD.replace("18101", "70000"), ":5: agents.echo.port: Input should be less than or equal to 65535"),
        (GOOD + "  other:\n    module: agents.echo\n    port: 18101\n",
         ":8: agents.other.port: port 18101 is already used by agents.echo"),
        (GOOD + "  echo:\n    module: agents.echo\n    port: 18102\n", ":6: agents.echo: duplicate key 'echo' (first at line 3)"),
        (GOOD.replace("agents.echo", "agents.nope"), ":4: agents.echo.module: cannot import 'agents.nope': no such module"),
        (GOOD.replace("agents.echo", "tests.support.agents.import_error"),
         ":4: agents.echo.module: cannot import 'tests.support.agents.import_error': ModuleNotFoundError"),
        (GOOD.replace("agents.echo", "mesh.config"), ":4: agents.echo.module: mesh.config is not an agent module"),
        (GOOD + "    auth:\n      bearer_token: ${MESH_TEST_UNSET_TOKEN}\n",
         ":7: agents.echo.auth.bearer_token: environment variable MESH_TEST_UNSET_TOKEN is not set"),
        (GOOD + "    auth:\n      bearer_token: hunter2\n",
         ":7: agents.echo.auth.bearer_token: secrets must come from the environment"),
        ("name: t\nagents:\n  primes:\n    module: agents.primes\n    port: 18101\n    settings:\n      max_limit: -5\n",
         ":7: agents.primes.settings.max_limit: Input should be greater than or equal to 10"),
        ("name: t\nagents:\n  primes:\n    module: agents.primes\n    port: 18101\n    settings:\n      bogus: 1\n",
         ":7: agents.primes.settings.bogus: unknown key 'bogus'"),
        ("name: t\nagents:\n  Bad_Name:\n    module: agents.echo\n    port: 18101\n", ":3: agents.Bad_Name: names are lower-case"),
        ("name: t\nagents:\n  x:\n    url: http://example.com\n    port: 4\n",
         ":5: agents.x.port: 'port' is for local agents; an external agent has 'url' instead"),
        ("name: t\nagents:\n  x:\n    port: 4\n", ":3: agents.x: give exactly one of 'module'"),
        ("- just\n- a list\n", ":1: the top level must be a mapping"),
        ("name: t\nstate:\n  database: mysql://x\n", ":3: state.database: must be a postgresql:// URL"),
    ],
)
def test_broken_file(tmp_path, text, expected):
    path, result = check(tmp_path, text)
    assert result.returncode == 2, result.stdout
    assert f"{path}{expected}" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_settings_are_free_form_without_a_settings_model(tmp_path):
    path, result = check(tmp_path, GOOD + "    settings:\n      whatever: 1\n")
    assert result.returncode == 0, result.stderr


def test_every_problem_is_listed_in_file_order(tmp_path):
    path, result = check(tmp_path, """\
        name: t
        agents:
          a:
            module: agents.echo
            port: x
          b:
            module: agents.echo
            colour: blue
            port: 18102
        """)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines == [
        f"{path}:5: agents.a.port: Input should be a valid integer, unable to parse string as an integer",
        f"{path}:8: agents.b.colour: unknown key 'colour' (allowed: {', '.join(AgentConfig.model_fields)})",
    ]


def test_env_references_are_expanded(tmp_path):
    path, result = check(tmp_path, GOOD.replace("18101", "${MESH_TEST_PORT}") + "    auth:\n      bearer_token: ${MESH_TEST_TOKEN}\n",
                         env={"MESH_TEST_PORT": "18111", "MESH_TEST_TOKEN": "t0ken"})
    assert result.returncode == 0, result.stderr
    path, result = check(tmp_path, GOOD.replace("18101", "${MESH_TEST_UNSET:-18112}"))
    assert result.returncode == 0, result.stderr


def test_missing_file(tmp_path):
    result = run_cli("check", "-c", str(tmp_path / "nope.yaml"))
    assert result.returncode == 2
    assert "nope.yaml: cannot read" in result.stderr


def test_an_invalid_file_also_reports_the_modules_it_names(tmp_path):
    path, result = check(tmp_path, """\
        name: t
        agents:
          a:
            module: agents.nope
            port: x
        tools:
          calc:
            module: mcp_tools.calculatorr
            transport: htp
        """)
    assert result.returncode == 2
    looked = f" (looked in {path.parent} (mesh.yaml's folder), the installed packages, {os.getcwd()} (where mesh was started))"
    assert result.stderr.strip().splitlines() == [
        f"{path}:4: agents.a.module: cannot import 'agents.nope': no such module" + looked,
        f"{path}:5: agents.a.port: Input should be a valid integer, unable to parse string as an integer",
        f"{path}:8: tools.calc.module: cannot import 'mcp_tools.calculatorr': no such module" + looked,
        f"{path}:9: tools.calc.transport: Input should be 'stdio' or 'http'",
    ]


def test_localhost_and_its_address_on_one_port_are_a_duplicate(tmp_path):
    path, result = check(tmp_path, GOOD + "    host: localhost\n  other:\n    module: agents.echo\n    host: 127.0.0.1\n    port: 18101\n")
    assert result.returncode == 2
    assert f"{path}:10: agents.other.port: port 18101 is already used by agents.echo" in result.stderr


def test_an_alias_bomb_is_refused_in_one_line_without_expanding_it(tmp_path):
    lines = ["name: t", "a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]  # 9^10 values if expanded
    path, result = check(tmp_path, "\n".join(lines) + "\n")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"{path}:7: aliases here expand to more than 200,000 values; a mesh file needs far fewer (is this an alias bomb?)"]


def test_a_recursive_anchor_is_refused_in_one_line(tmp_path):
    path, result = check(tmp_path, "name: t\nloop: &loop\n  again: *loop\n")
    assert result.returncode == 2
    assert result.stderr.strip() == f"{path}:2: an alias refers to the node that contains it (a recursive anchor)"


def test_a_huge_file_is_refused_before_it_is_parsed(tmp_path):
    path, result = check(tmp_path, "name: t\n# " + "x" * (5 * 1024 * 1024) + "\n")
    assert result.returncode == 2 and "too large for a mesh file" in result.stderr


def test_a_copy_of_mesh_yaml_elsewhere_names_the_folder_its_paths_are_taken_from(tmp_path):
    copy = tmp_path / "mesh.yaml"
    copy.write_text((ROOT / "mesh.yaml").read_text())
    result = run_cli("check", "-c", str(copy))
    assert result.returncode != 0
    assert f"no such file or directory: {tmp_path}/docs (relative paths in mesh.yaml are taken from its folder, " \
           f"{tmp_path}" in result.stderr + result.stdout


def test_modules_are_found_where_mesh_was_started_with_no_pythonpath(tmp_path):
    # the TCK agent of tests/support, named by a mesh.yaml in another folder, from a checkout: like `python -m`
    (tmp_path / "mesh.yaml").write_text("name: t\nagents:\n  tck: {module: tests.support.agents.tck, port: 1}\n")
    # a fresh shell: no PYTHONPATH, and no MESH_START_DIR (main() run in this process by other tests sets it)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MESH_START_DIR")}
    found = subprocess.run([str(VENV_BIN / "mesh"), "check", "-c", str(tmp_path / "mesh.yaml")],
                           capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)
    assert found.returncode == 0, found.stdout + found.stderr
    missing = subprocess.run([str(VENV_BIN / "mesh"), "check", "-c", str(tmp_path / "mesh.yaml")],
                             capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)
    assert missing.returncode != 0
    assert f"no such module (looked in {tmp_path} (mesh.yaml's folder), the installed packages)" \
        in missing.stdout + missing.stderr
