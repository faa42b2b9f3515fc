"""The unit tier needs nothing (issue 16): `tests/unit` passes in a process with no
capabilities at all (setpriv empties the bounding set, so even uid 0 holds none after exec):
no namespace, no netlink write, no chown, no nft. A test that needs one belongs in this
directory, the kernel tier."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from tests.conftest import ROOT


@pytest.mark.skipif(shutil.which("setpriv") is None, reason="setpriv is not installed")
def test_the_unit_tier_passes_without_any_capability() -> None:
    none = ["setpriv", "--bounding-set=-all", "--inh-caps=-all"]
    probe = subprocess.run([*none, "grep", "CapEff", "/proc/self/status"],
                           capture_output=True, text=True, check=True, timeout=30)
    assert probe.stdout.split()[1] == "0000000000000000", probe.stdout  # truly none
    done = subprocess.run(
        [*none, sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x",
         "tests/unit"],
        cwd=ROOT, capture_output=True, text=True, check=False, timeout=600)
    tail = "\n".join(done.stdout.splitlines()[-15:])
    assert done.returncode == 0, tail
    assert " passed" in tail and "skipped" not in tail.rsplit("\n", 1)[-1], tail
