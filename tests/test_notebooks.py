"""The tutorial notebooks run top to bottom in a fresh kernel, and are stored without outputs."""

from __future__ import annotations

import os
import pathlib
import sys

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOKS = pathlib.Path(__file__).resolve().parents[1] / "notebooks"
ALL = sorted(NOTEBOOKS.glob("*.ipynb"))


def test_the_tutorials_are_there() -> None:
    names = [p.name for p in ALL]
    assert {"01_quickstart.ipynb", "03_optimisers_and_schedules.ipynb"} <= set(names), names


@pytest.mark.parametrize("path", ALL, ids=lambda p: p.stem)
def test_notebook_is_stored_without_outputs(path: pathlib.Path) -> None:
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code, "the notebook has no code cells"
    for i, cell in enumerate(code):
        assert cell.execution_count is None, f"code cell {i} has execution_count {cell.execution_count}"
        assert cell.outputs == [], f"code cell {i} has stored outputs; clear them before committing"


def _kernel_runs_this_interpreter() -> bool:
    # jupyter_client swaps a bare "python"/"python3" argv[0] for sys.executable, and finds the
    # "python3" spec under sys.prefix first: so the kernel is this (the venv's) interpreter.
    from jupyter_client.kernelspec import KernelSpecManager

    argv0 = KernelSpecManager().get_kernel_spec("python3").argv[0]
    bare = {"python", f"python{sys.version_info[0]}", "python{}.{}".format(*sys.version_info[:2])}
    return argv0 in bare or os.path.realpath(argv0) == os.path.realpath(sys.executable)


@pytest.mark.slow
@pytest.mark.parametrize("path", ALL, ids=lambda p: p.stem)
def test_notebook_runs(path: pathlib.Path) -> None:
    assert _kernel_runs_this_interpreter(), "the python3 kernelspec does not start this interpreter"
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(nb, kernel_name="python3", timeout=300,
                                     resources={"metadata": {"path": str(NOTEBOOKS)}})
    try:
        client.execute()
    except nbclient.exceptions.CellExecutionError as e:
        pytest.fail(f"{path.name} failed:\n{e}", pytrace=False)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors, errors
