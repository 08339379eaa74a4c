"""The web console of `mesh up`, in Debian's chromium over CDP: agents listed, the plan graph drawn live, a trace opened."""

import json
import os
from pathlib import Path

import pytest

from tests.support.browser import Browser, chromium_path
from tests.support.util import MeshUp, free_ports, run_cli, write_mesh

pytestmark = pytest.mark.skipif(chromium_path() is None, reason="needs Debian's chromium (scripts/test-deps)")

WORKER = "tests.support.agents.worker"
# a run slow enough to be caught running: its first vertex answers after 3 s
SLOW = {"entry": "first", "vertices": [{"id": "first", "kind": "agent", "agent": "worker"},
                                       {"id": "second", "kind": "agent", "agent": "worker"}], "edges": ["first -> second"]}
PLAN = {"description": "a planner adds one agent vertex per job at the barrier", "entry": "planner", "outputs": ["report"],
        "vertices": [{"id": "planner", "kind": "python", "function": "agents.graph_steps:plan"},
                     {"id": "report", "kind": "python", "function": "agents.graph_steps:report"}]}
# Where screenshots go when MESH_CONSOLE_SCREENSHOTS names a directory (the README's come from here).
SHOTS = os.environ.get("MESH_CONSOLE_SCREENSHOTS")


@pytest.fixture(scope="module")
def mesh(tmp_path_factory):
    directory = tmp_path_factory.mktemp("console")
    ports = free_ports(4)
    config = write_mesh(directory, {
        "coordinator": {"module": "agents.coordinator", "port": ports[0]},
        "primes": {"module": "agents.primes", "port": ports[1]},
        "echo": {"module": "agents.echo", "port": ports[2]},
        "worker": {"module": WORKER, "port": ports[3], "settings": {"delays": {"first": 3.0}}},
    }, graphs={"plan": PLAN, "slow": SLOW}, name="console-test")
    with MeshUp(config, env={"OTEL_BSP_SCHEDULE_DELAY": "100"}) as up:
        up.wait_ready()
        line = up.wait_for("console: http://")
        url = line.split("console: ", 1)[1].split()[0]
        yield config, url, up


@pytest.fixture(scope="module")
def browser(mesh):
    chromium = Browser()
    try:
        chromium.open(mesh[1] + "/#mesh")
        yield chromium
    finally:
        chromium.close()


def shot(browser: Browser, name: str) -> None:
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        browser.screenshot(Path(SHOTS) / name)


def test_console_url_is_in_the_table_and_in_mesh_ls(mesh):
    config, url, _up = mesh
    assert url.startswith("http://127.0.0.1:")
    listing = json.loads(run_cli("ls", "-c", str(config), "--json").stdout)
    assert listing["console"] == {"enabled": True, "url": url, "port": int(url.rsplit(":", 1)[1]), "answers": True}


def test_the_mesh_page_lists_the_agents_with_their_cards_and_metrics(browser):
    rows = browser.wait_for("""(() => {
        const rows = [...document.querySelectorAll('#agents tbody tr')];
        return rows.length === 4 && rows.every(r => r.children[1].textContent.startsWith('up')) &&
               rows.map(r => [r.dataset.agent, r.children[3].textContent, r.children[2].textContent]);
    })()""")
    by_name = {name: (skills, protocols) for name, skills, protocols in rows}
    assert set(by_name) == {"coordinator", "primes", "echo", "worker"}
    assert by_name["primes"][0] == "count-primes" and "plan" in by_name["coordinator"][0]
    assert "JSONRPC 1.0" in by_name["echo"][1]


def test_a_plan_run_is_drawn_live_with_the_planners_vertices(browser):
    browser.evaluate("location.hash = '#graphs'")
    browser.wait_for("!document.querySelector('#page-graphs').hidden")
    drawn = browser.evaluate("[...document.querySelectorAll('#graph .vertex')].map(v => v.dataset.id).sort()")
    assert drawn == ["planner", "report"]
    # Watch the drawing from outside the console's code: each added vertex, and the run's status when it appeared.
    browser.evaluate("""(() => {
        window.seen = [];
        new MutationObserver(records => {
            for (const record of records) for (const node of record.addedNodes) {
                if (!(node instanceof Element)) continue;
                for (const v of node.querySelectorAll('.vertex.added'))
                    window.seen.push([v.dataset.id, document.querySelector('#run-status').textContent]);
            }
        }).observe(document.querySelector('#graph'), {childList: true, subtree: true});
        document.querySelector('#run-input').value = 'primes below 3000000; primes below 2000000; echo this';
        document.querySelector('#run-button').click();
    })()""")
    browser.wait_for("document.querySelector('#run-status').textContent === 'completed'", timeout=60)
    seen = browser.evaluate("window.seen")
    first = {}
    for vertex, status in seen:
        first.setdefault(vertex, status)
    assert set(first) == {"job1", "job2", "job3"}
    assert all(status == "working" for status in first.values()), first  # drawn while the run was live
    final = browser.evaluate("""[...document.querySelectorAll('#graph .vertex')].map(v => [v.dataset.id, v.getAttribute('class')])""")
    classes = dict(final)
    assert set(classes) == {"planner", "report", "job1", "job2", "job3"}
    assert "added" in classes["job1"] and "added" not in classes["planner"] and "output" in classes["report"]
    labels = browser.evaluate("[...document.querySelectorAll('#graph .edge-group')].map(g => [g.dataset.edge, g.textContent])")
    assert any(edge == "job1->report" and label.endswith(" ms") for edge, label in labels), labels
    report = browser.evaluate("document.querySelector('[data-output=report]').textContent")
    assert "job1: " in report and "148,933 primes below 2,000,000" in report and "job3: " in report
    shot(browser, "console-graph.png")


def test_a_past_run_replays_superstep_by_superstep(browser):
    browser.wait_for("document.querySelectorAll('#runs tbody tr').length >= 1")
    browser.evaluate("document.querySelector('#runs tbody tr:last-child').click()")
    browser.wait_for("!document.querySelector('#replay-bar').hidden && document.querySelector('#replay-at').textContent.includes('superstep -1')")
    assert browser.evaluate("document.querySelectorAll('#graph .vertex').length") == 2
    browser.evaluate("document.querySelector('#replay-next').click()")  # superstep 0: the planner ran, its jobs appear
    browser.wait_for("document.querySelectorAll('#graph .vertex.added').length === 3")
    assert browser.evaluate("[...document.querySelectorAll('#graph .vertex.active')].map(v => v.dataset.id)") == ["planner"]
    browser.evaluate("document.querySelector('#replay-next').click()")
    active = browser.wait_for("[...document.querySelectorAll('#graph .vertex.active')].map(v => v.dataset.id).sort().join()")
    assert active == "job1,job2,job3"


def test_a_run_started_elsewhere_is_watched_live(browser, mesh):
    import subprocess

    from tests.support.util import MESH, ROOT, mesh_env

    config = mesh[0]
    run = subprocess.Popen([MESH, "run", "slow", "hello", "-c", str(config)], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, cwd=ROOT, env=mesh_env())
    try:
        browser.wait_for("""(() => {
            const row = [...document.querySelectorAll('#runs tbody tr')].find(r => r.textContent.includes('running'));
            if (!row) { document.querySelector('#runs-refresh').click(); return false; }
            row.click();
            return true;
        })()""", timeout=20)
        browser.wait_for("document.querySelector('#run-step').textContent.startsWith('watching run')")
        browser.wait_for("document.querySelector('#run-status').textContent === 'completed'", timeout=30)
        assert run.wait(30) == 0, run.stdout.read()
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    steps = browser.evaluate("[...document.querySelectorAll('#run-log li')].map(li => li.textContent)")
    assert len(steps) == 2 and steps[0].startswith("1 active (first)") and steps[1].startswith("1 active (second)"), steps
    assert browser.evaluate("document.querySelector('[data-output=second]') !== null")


def test_a_trace_of_the_run_opens_as_a_waterfall(browser):
    browser.evaluate("location.hash = '#traces'")
    row = browser.wait_for("""(() => {
        const rows = [...document.querySelectorAll('#traces tbody tr')];
        const run = rows.find(r => r.children[1].textContent.includes('SendStreamingMessage') &&
                                   r.children[2].textContent.includes('primes'));
        if (!run) { document.querySelector('#trace-refresh').click(); return false; }
        run.click();
        return run.dataset.trace;
    })()""", timeout=30)
    spans = browser.wait_for("""document.querySelectorAll('#waterfall .span-row').length > 3 &&
        [...document.querySelectorAll('#waterfall .span-name')].map(s => s.textContent)""")
    assert any(s.startswith("coordinator: graph plan") for s in spans), spans
    assert any(s.startswith("primes: ") for s in spans), spans
    depth = browser.evaluate("Math.max(...[...document.querySelectorAll('#waterfall .span-name')].map(s => parseInt(s.style.paddingLeft)))")
    assert depth >= 24  # parent links: the primes agent's span sits under the coordinator's
    assert row
    shot(browser, "console-trace.png")


def test_tasks_are_listed_and_a_message_is_sent_from_the_page(browser):
    browser.evaluate("location.hash = '#tasks'; document.querySelector('#task-agent').value = 'echo'")
    browser.evaluate("document.querySelector('#send-text').value = 'hello from the console'; document.querySelector('#send-button').click()")
    text = browser.wait_for("document.querySelector('#task-detail').textContent.includes('hello from the console') && "
                            "document.querySelector('#task-detail').textContent")
    assert "completed" in text
    assert browser.evaluate("document.querySelectorAll('#tasks tbody tr[data-task]').length") >= 1
    assert browser.errors == []


def test_a_killed_agent_is_shown_restarted(browser, mesh):
    import signal

    browser.evaluate("location.hash = '#mesh'")
    status = browser.evaluate("fetch('/api/status').then(r => r.json())")
    echo = next(p for p in status["processes"] if p["name"] == "echo")
    assert echo["process"]["state"] == "running" and echo["process"]["restarts"] == 0
    os.kill(echo["process"]["pid"], signal.SIGKILL)
    shown = browser.wait_for("""(() => {
        const cell = document.querySelector('#agents tr[data-agent=echo]').children[1].textContent;
        return cell.startsWith('up') && cell.includes('1 restarts') && cell;
    })()""", timeout=30)
    assert shown == "up (1 restarts)"
    after = browser.evaluate("fetch('/api/status').then(r => r.json())")
    assert next(p for p in after["processes"] if p["name"] == "echo")["process"]["pid"] != echo["process"]["pid"]
    shot(browser, "console-mesh.png")  # with the traffic of the tests above
