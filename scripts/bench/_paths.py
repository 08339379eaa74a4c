"""Imported first by every benchmark here: the project root on sys.path, this folder off it.

Run as scripts, the benchmarks have this folder first on sys.path, where
a2a.py and mcp.py would shadow the a2a-sdk and mcp packages.
"""

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path[:] = [str(ROOT), *(p for p in sys.path if Path(p or ".").resolve() != HERE)]
