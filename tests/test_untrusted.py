"""Readers of files from someone else (`bptt.core.untrusted`): links, non-regular files, sizes,
depths and npz headers are refused with the file named, before anything large is read."""

import io
import os
import zipfile

import numpy as np
import pytest

from bptt.core.untrusted import (
    Npz, UntrustedFileError, iter_lines, json_depth, loads_json, open_regular, read_bytes, read_json, read_text_file,
)


def test_a_link_is_refused_unless_the_caller_named_it(tmp_path):
    target = tmp_path / "notes.txt"
    target.write_text("mine")
    (tmp_path / "link").symlink_to(target)
    with pytest.raises(UntrustedFileError, match="link: is a symbolic link"):
        read_bytes(tmp_path / "link", 100)
    assert read_bytes(tmp_path / "link", 100, follow_links=True) == b"mine"
    assert target.read_text() == "mine"


@pytest.mark.parametrize("make, kind", [
    (lambda p: os.mkfifo(p), "a FIFO"),
    (lambda p: os.mkdir(p), "a folder"),
])
def test_a_fifo_or_folder_is_refused_without_blocking(tmp_path, make, kind):
    path = tmp_path / "thing"
    make(path)
    with pytest.raises(UntrustedFileError, match=f"is not a regular file \\(it is {kind}\\)"):
        open_regular(path)


def test_a_device_is_refused_even_through_a_path_the_user_gave():
    with pytest.raises(UntrustedFileError, match="/dev/zero: is not a regular file"):
        read_text_file("/dev/zero", 10**6)


def test_a_file_above_its_limit_is_refused_after_reading_one_byte_more(tmp_path):
    path = tmp_path / "big"
    path.write_bytes(b"x" * 101)
    assert read_bytes(tmp_path / "big", 101) == b"x" * 101
    with pytest.raises(UntrustedFileError, match="larger than 100 bytes"):
        read_bytes(path, 100)


def test_json_nested_deeper_than_allowed_is_refused_before_parsing(tmp_path):
    path = tmp_path / "config.json"
    path.write_bytes(b"[" * 100_000 + b"]" * 100_000)
    with pytest.raises(UntrustedFileError, match="config.json: JSON nested more than 8 levels deep"):
        read_json(path, limit=10**6, max_depth=8)
    assert loads_json(b'{"a": "[[[[[[[[[["}', max_depth=1, where="x") == {"a": "[[[[[[[[[["}
    assert json_depth(b'[[["\\"]"]]]') == 3


@pytest.mark.parametrize("data, problem", [(b"\xff\xfe", "not UTF-8"), (b"{", "not valid JSON")])
def test_text_that_is_not_json_is_named(data, problem):
    with pytest.raises(UntrustedFileError, match=f"summary.json: {problem}"):
        loads_json(data, max_depth=4, where="summary.json")


def test_lines_are_streamed_with_a_bound_on_each():
    f = io.BytesIO(b"a\n" + b"b" * 10 + b"\nc")
    assert list(iter_lines(f, max_line=10, where="log")) == [(1, b"a"), (2, b"b" * 10), (3, b"c")]
    with pytest.raises(UntrustedFileError, match="log: line 2 is longer than 9 bytes"):
        list(iter_lines(io.BytesIO(b"a\n" + b"b" * 10 + b"\n"), max_line=9, where="log"))


def test_npz_headers_are_checked_before_data_is_read(tmp_path):
    path = tmp_path / "data.npz"
    np.savez_compressed(path, inputs=np.ones((3, 4, 2)), targets=np.arange(3))
    with Npz(path, max_bytes=10**6) as data:
        assert data.members["inputs"].shape == (3, 4, 2) and data.members["inputs"].nbytes == 192
        np.testing.assert_array_equal(data.read("inputs", shape=(None, 4, 2), kinds="f"), np.ones((3, 4, 2)))
        with pytest.raises(UntrustedFileError, match=r"array 'inputs' has shape \(3, 4, 2\), expected \(\?, 5, 2\)"):
            data.read("inputs", shape=(None, 5, 2))
        with pytest.raises(UntrustedFileError, match="array 'targets' has dtype int64, expected floating point"):
            data.read("targets", kinds="f")
        with pytest.raises(UntrustedFileError, match="has no array 'lengths'"):
            data.read("lengths")
    with pytest.raises(UntrustedFileError, match="its arrays hold more than 100 bytes"):
        Npz(path, max_bytes=100)


def test_a_compressed_bomb_is_refused_from_its_header(tmp_path):
    """A 256 MB array that compresses to 256 kB: its header is read, nothing else."""
    path = tmp_path / "checkpoint.npz"
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False, "shape": (2**25,)})
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z, z.open("param/w.npy", "w", force_zip64=True) as f:
        f.write(header.getvalue())
        block = bytes(2**20)
        for _ in range(2**8):
            f.write(block)
    assert path.stat().st_size < 2**20
    with pytest.raises(UntrustedFileError, match="its arrays hold more than 1,000,000 bytes"):
        Npz(path, max_bytes=10**6)
    with Npz(path, max_bytes=2**32) as data, pytest.raises(UntrustedFileError, match=r"shape \(33554432,\)"):
        data.read("param/w", shape=(10,))


def test_an_object_array_or_a_lying_size_is_refused(tmp_path):
    path = tmp_path / "objects.npz"
    np.savez(path, x=np.array([{"a": 1}], dtype=object))
    with pytest.raises(UntrustedFileError, match="array 'x' holds Python objects"):
        Npz(path, max_bytes=10**6)
    lying = tmp_path / "lying.npz"
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False, "shape": (1000,)})
    with zipfile.ZipFile(lying, "w") as z:
        z.writestr("x.npy", header.getvalue() + bytes(80))
    with pytest.raises(UntrustedFileError, match="array 'x' declares 208 bytes, but its header"):
        Npz(lying, max_bytes=10**6)
    (tmp_path / "not.npz").write_bytes(b"PK garbage")
    with pytest.raises(UntrustedFileError, match="not an npz file"):
        Npz(tmp_path / "not.npz", max_bytes=10**6)
