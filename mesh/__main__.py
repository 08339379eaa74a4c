"""`python -m mesh` runs the mesh CLI."""

from mesh.cli import main

raise SystemExit(main())
