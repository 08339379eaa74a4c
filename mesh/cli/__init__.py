"""The `mesh` command: ``main`` (the parser), one module per command group, ``common`` (what they share),
``output`` (terminal tables and events) and ``supervisor`` (the processes of `mesh up`)."""
