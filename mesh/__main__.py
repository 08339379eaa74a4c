"""`python -m mesh` runs the mesh CLI."""

from mesh.cli.main import main

raise SystemExit(main())
