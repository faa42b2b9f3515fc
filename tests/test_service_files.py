"""What an install puts beside the programs: systemd units that `systemd-analyze verify`
accepts, man pages that render and say what --help says, completions that bash loads."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
from importlib import metadata
from pathlib import Path

import pytest

from tests.conftest import ROOT

PROGRAMS = sorted(e.name for e in metadata.distribution("linkbroker").entry_points
                  if e.group == "console_scripts")


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("share")
    subprocess.run([sys.executable, str(ROOT / "contrib/manpages.py"), str(out)], check=True,
                   capture_output=True, cwd=ROOT, timeout=120)
    return out


def test_the_three_programs_are_covered() -> None:
    assert {"linkbrokerd", "linkadm", "linkbroker-agent"} <= set(PROGRAMS)


@pytest.mark.parametrize("prog", PROGRAMS)
def test_man_page_renders_and_matches_help(generated: Path, prog: str) -> None:
    page = generated / "man/man8" / f"{prog}.8"
    out = subprocess.run(["man", "-l", str(page)], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "MANWIDTH": "100", "MANPAGER": "cat"}, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stderr == "", out.stderr  # groff warnings would be a malformed page
    text = re.sub(r"\s+", " ", out.stdout)
    assert text.startswith(f"{prog.upper()}(8) ") and " NAME " in text and " SYNOPSIS " in text
    helped = subprocess.run([shutil.which(prog) or prog, "--help"], capture_output=True,
                            text=True, check=True, timeout=60).stdout
    # Every option and every subcommand --help names is in the page.
    for word in set(re.findall(r"(?<![\w-])--[a-z][a-z-]+", helped)) - {"--help"}:
        assert word in text, word
    for verb in set(re.findall(r"^    ([a-z]+-[a-z]+|whoami|watch)\s", helped, re.M)):
        assert f"{prog} {verb}" in text, verb


@pytest.mark.parametrize("prog", PROGRAMS)
def test_bash_completion_loads_and_completes(generated: Path, prog: str) -> None:
    script = generated / "bash-completion/completions" / prog
    func = "_shtab_" + prog.replace("-", "_")
    out = subprocess.run(
        ["bash", "--norc", "-c",
         f'source "$1" && complete -p {prog} && COMP_WORDS=({prog} --) && COMP_CWORD=1 && '
         f'COMP_LINE="{prog} --" && COMP_POINT=${{#COMP_LINE}} && {func} {prog} -- {prog} && '
         'printf "%s\\n" "${COMPREPLY[@]}"', "bash", str(script)],
        capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].endswith(f" {prog}")
    assert "--help" in lines[1:]
    if prog in ("linkbrokerd", "linkadm"):
        assert "--socket" in lines[1:] and "--version" in lines[1:]


@pytest.mark.parametrize("prog", PROGRAMS)
def test_zsh_completion_is_a_compdef(generated: Path, prog: str) -> None:
    text = (generated / "zsh/site-functions" / f"_{prog}").read_text()
    assert text.startswith(f"#compdef {prog}\n")
    if shutil.which("zsh"):
        subprocess.run(["zsh", "-n", str(generated / "zsh/site-functions" / f"_{prog}")],
                       check=True, timeout=60)


def test_systemd_units_verify(generated: Path, tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    assert analyze, "scripts/install.sh test installs the systemd package"
    bindir = sysconfig.get_path("scripts")
    units = []
    for unit in sorted((ROOT / "contrib/systemd").iterdir()):
        text = unit.read_text()
        assert "@BINDIR@" in text or unit.suffix == ".socket"
        (tmp_path / unit.name).write_text(text.replace("@BINDIR@", bindir))
        units.append(unit.name)
    assert units == ["linkbroker-agent.service", "linkbroker.service", "linkbroker.socket"]
    # systemd-analyze runs `man` for each Documentation= page: the generated ones count.
    out = subprocess.run([analyze, "verify", *units], capture_output=True, text=True,
                         cwd=tmp_path, timeout=120, check=False,
                         env={**os.environ, "MANPATH": str(generated / "man")})
    assert out.returncode == 0 and out.stdout + out.stderr == "", out.stdout + out.stderr


def test_service_keeps_the_daemons_capabilities() -> None:
    """The unit's bounding set is exactly the seven capabilities the daemon keeps."""
    from broker._privileges import KEPT

    names = {1: "CAP_DAC_OVERRIDE", 2: "CAP_DAC_READ_SEARCH", 3: "CAP_FOWNER",
             12: "CAP_NET_ADMIN", 18: "CAP_SYS_CHROOT", 19: "CAP_SYS_PTRACE",
             21: "CAP_SYS_ADMIN"}
    unit = (ROOT / "contrib/systemd/linkbroker.service").read_text()
    (line,) = [x for x in unit.splitlines() if x.startswith("CapabilityBoundingSet=")]
    assert set(line.split("=", 1)[1].split()) == {names[c] for c in KEPT}
