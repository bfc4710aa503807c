"""Names that stand for classes (`bptt.core.import_path`): built-ins first, then entry points, then
MODULE:CLASS; every refusal names the name, what was tried and what went wrong."""

import sys
import textwrap

import pytest

import bptt
from bptt.cells.registry import cell_factory, cell_name
from bptt.core import import_path
from bptt.core.import_path import ImportPathError, is_import_path, resolve


@pytest.fixture
def module_dir(tmp_path, monkeypatch):
    """A folder on sys.path for modules written by the test; forgotten by the resolver afterwards."""
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(import_path, "_resolved", {})
    monkeypatch.setattr(import_path, "_registered", {})
    yield tmp_path
    for name in [m for m in sys.modules if m.startswith("ip_")]:
        del sys.modules[name]


def write_module(folder, name, source):
    (folder / f"{name}.py").write_text(textwrap.dedent(source))


def test_a_built_in_name_wins_and_an_import_path_gives_its_class(module_dir):
    write_module(module_dir, "ip_cells", """
        import bptt
        class Mine(bptt.GRU):
            pass
        class Outer:
            class Inner(bptt.RNN):
                pass
    """)
    assert cell_factory("gru") is not None and cell_factory("ip_cells:Mine").__name__ == "Mine"
    assert cell_factory("ip_cells:Outer.Inner").__qualname__ == "Outer.Inner"
    cell = bptt.make_cell("ip_cells:Mine", 2, 3, seed=0)
    reference = bptt.GRU(2, 3, seed=0)
    assert all((cell.params[k] == reference.params[k]).all() for k in cell.params)
    assert cell_name(cell) == "ip_cells:Mine"
    assert cell_name(bptt.GRU(2, 3)) == "gru"


@pytest.mark.parametrize("name, problem", [
    ("ip_missing:Cell", r"no module named 'ip_missing' on the Python path \(install it, or add its folder to PYTHONPATH\)"),
    ("ip_broken:Cell", r"importing module 'ip_broken' failed: ZeroDivisionError: division by zero"),
    ("ip_needs:Cell", r"importing module 'ip_needs' failed: ModuleNotFoundError: No module named 'ip_absent'"),
    ("ip_cells:Nope", r"module 'ip_cells' has no attribute 'Nope'"),
    ("ip_cells:NotACell", r"ip_cells:NotACell is not a subclass of bptt.cells.cell.Cell"),
    ("ip_cells:helper", r"ip_cells:helper is not a subclass of bptt.cells.cell.Cell"),
    ("gruu", r"'gruu' is neither a built-in cell nor registered in bptt.cells, and not MODULE:CLASS"),
    ("ip_cells:", r"neither a built-in cell"),
    ("../evil:Cell", r"neither a built-in cell"),
    ("a" * 400 + ":B", r"'a{57}\.\.\.' is neither"),
])
def test_a_name_that_resolves_to_no_cell_is_refused_naming_it_and_why(module_dir, name, problem):
    write_module(module_dir, "ip_cells", """
        class NotACell:
            pass
        def helper():
            pass
    """)
    write_module(module_dir, "ip_broken", "1 / 0\n")
    write_module(module_dir, "ip_needs", "import ip_absent\n")
    with pytest.raises(ImportPathError, match=problem) as info:
        bptt.make_cell(name, 2, 3)
    assert info.value.name == name and "MODULE:CLASS" in str(info.value)


def test_a_non_string_name_is_refused():
    with pytest.raises(ImportPathError, match="not a name"):
        cell_factory(3)


def test_an_installed_package_registers_a_cell_through_its_entry_point(module_dir):
    write_module(module_dir, "ip_plugin", """
        import bptt
        class Registered(bptt.LSTM):
            pass
    """)
    dist = module_dir / "ip_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: ip-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[bptt.cells]\nmylstm = ip_plugin:Registered\nbroken = ip_plugin:Absent\n"
                                           "gru = ip_plugin:Registered\n")
    assert bptt.make_cell("mylstm", 2, 3).__class__.__name__ == "Registered"
    assert type(bptt.make_cell("gru", 2, 3)) is bptt.GRU  # a package cannot shadow a built-in
    with pytest.raises(ImportPathError, match=r"the entry point ip_plugin:Absent registered as 'broken' in "
                                              r"bptt.cells cannot be loaded: AttributeError"):
        bptt.make_cell("broken", 2, 3)


def test_what_is_an_import_path():
    assert is_import_path("a.b.c:D.E") and is_import_path("_x:_Y")
    for name in ["a", "a:", ":B", "a:b:c", "a..b:C", "1a:B", "a:B()", "a b:C", None, 3, "a" * 300 + ":B"]:
        assert not is_import_path(name), name


def test_an_answer_is_kept_so_a_module_is_imported_once(module_dir):
    write_module(module_dir, "ip_counted", """
        import bptt
        IMPORTS = [1]
        class Counted(bptt.RNN):
            pass
    """)
    first = resolve("ip_counted:Counted", kind="cell", builtins={}, group="bptt.cells", base=bptt.Cell)
    sys.modules["ip_counted"].IMPORTS.append(1)
    del sys.modules["ip_counted"]
    assert resolve("ip_counted:Counted", kind="cell", builtins={}, group="bptt.cells", base=bptt.Cell) is first
