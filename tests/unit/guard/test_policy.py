"""The guard policy per direction (input, output, tool results) and what an agent relays of a trusted tool."""

from mesh.config.guard import CATEGORIES, GuardPolicy
from mesh.guard.enforcement import without_relayed
from mesh.guard.verdicts import Verdict, categories_of


def verdict(check: str, *codes: str) -> Verdict:
    return Verdict(safe=not codes, categories=categories_of(codes), check=check, backend="embedded", embedded=True, model="m",
                   latency_ms=0.1, content_hash="0" * 64)


def test_what_blocks_depends_on_what_is_checked():
    policy = GuardPolicy()
    # input: everything; output: harm (S1-S13), not INJ or S14; tool results: INJ
    assert policy.blocking(verdict("input", "INJ", "S14", "S9")) == ["S9", "S14", "INJ"]
    assert policy.blocking(verdict("output", "INJ", "S14", "S9")) == ["S9"]
    assert policy.blocking(verdict("output", "INJ")) == []
    assert policy.blocking(verdict("input", "S9"), check="tool") == []
    assert policy.blocking(verdict("input", "INJ"), check="tool") == ["INJ"]
    assert policy.codes_for("output") == set(CATEGORIES) - {"INJ", "S14"}
    assert policy.key_for("output") == "output_block" and policy.key_for("tool") == "tool_block"


def test_each_direction_can_be_set_in_mesh_yaml():
    policy = GuardPolicy(block=["S9"], output_block="all", tool_block=["INJ", "S2"])
    assert policy.blocking(verdict("input", "INJ", "S9")) == ["S9"]
    assert policy.blocking(verdict("output", "INJ")) == ["INJ"]
    assert policy.blocking(verdict("output", "S2"), check="tool") == ["S2"]


def test_what_is_relayed_of_a_trusted_result_is_not_checked_again():
    passage = "The guard checks S1 to S14: violent crimes, self-harm, defamation and the rest."
    trusted = ["some header\n" + passage + "\nmore text"]
    # a whole line, and a line with a short label before the passage
    assert without_relayed(passage, trusted).strip() == ""
    assert without_relayed(f"concepts.md:19-23 (0.51): {passage}", trusted).strip() == "concepts.md:19-23 (0.51):"
    # the agent's own words stay, and nothing is dropped without a trusted source
    own = "Here is how to hurt someone, step by step."
    assert without_relayed(f"{passage}\n{own}", trusted).strip() == own
    assert without_relayed(passage, []) == passage
    # a short fragment that happens to occur in the source is not enough to drop a line of the agent's
    assert without_relayed("I think the rest is wrong", trusted) == "I think the rest is wrong"
