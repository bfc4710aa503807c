"""Every public name documents itself the numpydoc way, and its example runs (as a doctest, collected
by pytest from the package's modules)."""

import inspect

import pytest

import bptt

PUBLIC = [name for name in sorted(bptt.__all__)
          if inspect.isfunction(getattr(bptt, name)) or inspect.isclass(getattr(bptt, name))]


def sections(doc: str) -> set[str]:
    """The numpydoc section titles of a docstring: a line underlined by dashes of its length."""
    lines = [line.strip() for line in doc.splitlines()]
    return {title for title, rule in zip(lines, lines[1:]) if title and rule == "-" * len(title)}


@pytest.mark.parametrize("name", PUBLIC)
def test_public_name_has_numpydoc_sections_and_an_example(name):
    obj = getattr(bptt, name)
    doc = inspect.getdoc(obj) or ""
    found = sections(doc)
    assert "Examples" in found and ">>> " in doc.split("Examples", 1)[1], f"bptt.{name}: no runnable example"
    if inspect.isclass(obj):
        assert found & {"Parameters", "Attributes"}, f"bptt.{name}: neither Parameters nor Attributes"
    else:
        if inspect.signature(obj).parameters:
            assert "Parameters" in found, f"bptt.{name}: no Parameters section"
        assert "Returns" in found, f"bptt.{name}: no Returns section"


def documented_names(doc: str, section: str) -> list[str]:
    """The names a Parameters or Attributes section lists: its unindented lines, "a, b : type" or "a"."""
    lines = doc.split(f"{section}\n{'-' * len(section)}\n", 1)[1].splitlines()
    names = []
    for line, following in zip(lines, lines[1:] + [""]):
        if following and set(following) == {"-"}:
            break  # `line` is the next section's title
        if line and not line.startswith(" "):
            names += [part.strip() for part in line.split(" : ")[0].split(",")]
    return names


def test_documented_names_reads_names_and_stops_at_the_next_section():
    doc = "Summary.\n\nParameters\n----------\na, b : int\n    Two.\nflag\n    Bare.\n\nReturns\n-------\nint\n"
    assert documented_names(doc, "Parameters") == ["a", "b", "flag"]


@pytest.mark.parametrize("name", PUBLIC)
def test_documented_arguments_are_exactly_the_signature(name):
    """Every argument is documented and every documented name is an argument (for a result class,
    its fields in Attributes), so neither a new argument nor a rename leaves the docstring behind."""
    obj = getattr(bptt, name)
    doc = inspect.getdoc(obj) or ""
    target = obj.__init__ if inspect.isclass(obj) else obj
    arguments = {name for name, p in inspect.signature(target).parameters.items()
                 if name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
    section = "Parameters" if "Parameters" in sections(doc) else "Attributes"
    if section not in sections(doc):
        assert not arguments, f"bptt.{name} takes {sorted(arguments)} but documents none"
        return
    documented = set(documented_names(doc, section))
    assert arguments <= documented, f"bptt.{name}: {sorted(arguments - documented)} undocumented"
    if section == "Parameters":
        assert documented <= arguments, f"bptt.{name} documents {sorted(documented - arguments)}, which it does not take"
