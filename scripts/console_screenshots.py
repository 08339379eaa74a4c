"""Screenshots of the console of a running `mesh up` for the README, in Debian's chromium (headless, over CDP).

    .venv/bin/python scripts/console_screenshots.py http://127.0.0.1:8090 docs/console

Run it against the default mesh after some traffic (`mesh run plan ...`, `mesh run tools ...`, a few
`mesh send`s, one blocked by the guard): it runs the plan graph from the page, opens the trace of a run
that used the calculator tool, and a coordinator task.
"""

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.browser import Browser  # noqa: E402

url, out = sys.argv[1].rstrip("/"), Path(sys.argv[2])
out.mkdir(parents=True, exist_ok=True)
b = Browser(width=1400, height=820)
try:
    b.open(url + "/#mesh")
    b.wait_for("document.querySelectorAll('#agents tbody tr').length === 6 && document.querySelector('#guard').textContent.includes('verdicts')")
    b.evaluate("document.querySelector('#agents tbody tr[data-agent=echo]').click()")
    time.sleep(0.3)
    b.screenshot(out / "console-mesh.png")
    b.evaluate("location.hash = '#graphs'; document.querySelector('#graph-name').value = 'plan'; document.querySelector('#graph-name').dispatchEvent(new Event('change'))")
    b.evaluate("document.querySelector('#run-input').value = 'primes below 5000000; primes below 1000000; what is 12*12; hello'; document.querySelector('#run-button').click()")
    b.wait_for("document.querySelector('#run-status').textContent === 'completed'", timeout=60)
    b.evaluate("document.querySelector('#run-outputs').scrollTop = 0")
    b.screenshot(out / "console-graph.png")
    b.evaluate("location.hash = '#traces'")
    b.wait_for("""(() => { const r = [...document.querySelectorAll('#traces tbody tr')].find(r => r.children[2].textContent.includes('tool calculator') && r.children[2].textContent.includes('guard'));
        if (!r) { document.querySelector('#trace-refresh').click(); return false; } r.click(); return true; })()""", timeout=20)
    b.wait_for("document.querySelectorAll('#waterfall .span-row').length > 3")
    b.evaluate("document.querySelector('#waterfall').scrollIntoView()")
    b.screenshot(out / "console-trace.png")
    b.evaluate("location.hash = '#tasks'; document.querySelector('#task-agent').value = 'coordinator'; document.querySelector('#task-agent').dispatchEvent(new Event('change'))")
    b.wait_for("document.querySelectorAll('#tasks tbody tr[data-task]').length >= 3")
    b.evaluate("document.querySelector('#tasks tbody tr[data-task]').click()")
    b.wait_for("document.querySelector('#task-detail').textContent.includes('artifacts')")
    b.screenshot(out / "console-tasks.png")
    print("errors", b.errors)
finally:
    b.close()
