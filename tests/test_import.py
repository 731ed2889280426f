"""`import ember` must stay cheap: no torch until something needs it."""

from __future__ import annotations

import subprocess
import sys


def _run(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()


def test_import_ember_does_not_import_torch():
    out = _run("import sys, ember; print('torch' in sys.modules, ember.__version__)")
    flag, version = out.split()
    assert flag == "False"
    assert version.count(".") == 2


def test_lazy_names_resolve_and_vision_registers_every_image_block():
    # A fresh process that loads an exported file imports ember.vision only: every block a file may name must be
    # registered by then, while optional packages (pydicom) stay unimported until a file of theirs is read.
    out = _run(
        "import sys, ember; print(ember.Learner.__name__, ember.set_seed.__name__, ember.EmberError.__name__); "
        "import ember.vision; from ember.core.recipe import _REGISTRY; "
        "print(all(n in _REGISTRY for n in ('ImageBlock', 'BBoxBlock', 'DicomBlock')), 'pydicom' in sys.modules)"
    )
    assert out.splitlines() == ["Learner set_seed EmberError", "True False"]


def test_cli_version_and_help():
    from ember._version import __version__

    out = subprocess.run([sys.executable, "-m", "ember.cli", "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == f"ember {__version__}"
    out = subprocess.run([sys.executable, "-m", "ember.cli", "--help"], capture_output=True, text=True, check=True)
    assert "demo" in out.stdout
