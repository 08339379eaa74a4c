"""The web console of `mesh up`: a Starlette app (app.py) over the mesh's own APIs, with static pages needing no build step."""
