"""What ``pip install .`` and the container image ship: the code, its schemas, and the licence beside them."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _shared_data() -> dict[str, str]:
    """Source file -> where the wheel installs it under the environment's prefix (setuptools data-files)."""
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    folders: dict[str, list[str]] = pyproject["tool"]["setuptools"]["data-files"]
    return {source: f"{folder}/{Path(source).name}" for folder, sources in folders.items() for source in sources}


def test_the_licence_is_the_apache_2_text_the_metadata_names() -> None:
    text = (REPO / "LICENSE").read_text()
    assert "Apache License\n                           Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text
    assert tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["license"] == "Apache-2.0"
    assert 'org.opencontainers.image.licenses="Apache-2.0"' in (REPO / "Dockerfile").read_text()


def test_the_wheel_carries_the_licence_the_schemas_and_the_documentation(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(tmp_path), str(REPO)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    (wheel,) = tmp_path.glob("nsg_forwarder-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert any(re.fullmatch(r"nsg_forwarder-[^/]+\.dist-info/licenses/LICENSE", n) for n in names), names
    assert "forwarder/schemas/config.schema.json" in names
    for target in _shared_data().values():
        assert any(n.endswith(f".data/data/{target}") for n in names), target
    licence = next(n for n in names if n.endswith("/licenses/LICENSE"))
    assert zipfile.ZipFile(wheel).read(licence) == (REPO / "LICENSE").read_bytes()


def test_the_image_build_copies_every_file_the_wheel_needs() -> None:
    """The build stage runs ``pip install .`` on what it copied: a file the wheel names but the stage lacks
    fails the image build, and the runtime stage takes the whole venv, licence included."""
    dockerfile = (REPO / "Dockerfile").read_text()
    build_stage = dockerfile.split("\nFROM ", 2)[1]
    copied = {word for line in build_stage.splitlines() if line.startswith("COPY ") for word in line.split()[1:-1]}
    for source in _shared_data():
        assert source in copied, f"{source} is not copied into the build stage"
    assert "COPY --from=build /opt/nsg-forwarder /opt/nsg-forwarder" in dockerfile
    ignored = (REPO / ".dockerignore").read_text().split()
    assert not {"LICENSE", "README.md", "CHANGELOG.md"} & set(ignored)
