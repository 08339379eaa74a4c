"""The guard on every agent: verdicts, the policy of mesh.yaml, the client of the guard agent, enforcement.

``verdicts`` (categories, verdicts, cache) <- ``policy`` (what is checked and
what blocks) <- ``client`` (asks the guard agent over A2A) <- ``enforcement``
(wraps an agent's executor: input, output, streamed chunks, tool results);
``status`` reports which backend the running guard uses.
"""
