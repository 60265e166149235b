"""The durable spool: order by creation, atomic files, corrupt files quarantined, never lost."""

from __future__ import annotations

import os
import stat

import msgpack
import pytest

from salt_redis_syndic.errors import SpoolError
from salt_redis_syndic.state import spool as spool_mod
from salt_redis_syndic.state.spool import Spool

pytestmark = pytest.mark.unit


def msg(i):
    return {"t": "ret", "jid": "20240501123456789012", "id": f"m{i}", "load": {"return": i}, "mom": "mom1"}


@pytest.fixture
def spool(tmp_path):
    return Spool(str(tmp_path / "spool"))


def test_missing_directory_is_empty(spool):
    assert spool.pending() == []
    assert spool.depth() == 0


def test_append_then_read_round_trip(spool):
    name = spool.append([msg(1), msg(2)])
    (item,) = spool.pending()
    assert item.name == name
    assert item.size == os.path.getsize(item.path) > 0
    assert spool.read(item) == [msg(1), msg(2)]
    assert spool.depth() == 1


def test_empty_append_writes_nothing(spool):
    assert spool.append([]) == ""
    assert spool.pending() == []


def test_files_are_private(spool):
    spool.append([msg(1)])
    assert stat.S_IMODE(os.stat(spool.directory).st_mode) == 0o700
    (item,) = spool.pending()
    assert stat.S_IMODE(os.stat(item.path).st_mode) == 0o600


def test_pending_is_oldest_first(spool):
    names = [spool.append([msg(i)]) for i in range(50)]
    assert [f.name for f in spool.pending()] == names
    assert [spool.read(f)[0]["id"] for f in spool.pending()] == [f"m{i}" for i in range(50)]


def test_order_survives_a_new_spool_object(spool):
    names = [spool.append([msg(i)]) for i in range(5)]
    again = Spool(spool.directory)
    names.append(again.append([msg(5)]))
    assert [f.name for f in Spool(spool.directory).pending()] == names


def test_pending_limit_takes_the_oldest(spool):
    names = [spool.append([msg(i)]) for i in range(10)]
    assert [f.name for f in spool.pending(limit=3)] == names[:3]


def test_no_temp_file_left_after_append(spool):
    for i in range(5):
        spool.append([msg(i)])
    assert all(not n.startswith(".tmp-") for n in os.listdir(spool.directory))


def test_half_written_temp_file_is_invisible(spool):
    spool.append([msg(1)])
    with open(os.path.join(spool.directory, ".tmp-00000000000000000001-0000001-000000001.mp"), "wb") as fh:
        fh.write(b"\x92\x81")  # a crash in the middle of a write
    assert [spool.read(f) for f in spool.pending()] == [[msg(1)]]
    assert spool.depth() == 1


def test_failed_rename_leaves_nothing_visible(spool, monkeypatch):
    def broken_rename(src, dst):
        raise OSError(28, "No space left on device")

    spool.append([msg(0)])
    monkeypatch.setattr(spool_mod.os, "rename", broken_rename)
    with pytest.raises(SpoolError):
        spool.append([msg(1)])
    monkeypatch.undo()
    assert [spool.read(f) for f in spool.pending()] == [[msg(0)]]
    assert spool.depth() == 1


def test_unwritable_directory_is_a_spool_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(SpoolError):
        Spool(str(blocker / "spool")).append([msg(1)])


def test_other_files_are_ignored(spool):
    spool.append([msg(1)])
    for name in ("notes.txt", "x.mp.part"):
        with open(os.path.join(spool.directory, name), "w") as fh:
            fh.write("x")
    assert len(spool.pending()) == 1
    assert spool.depth() == 1


@pytest.mark.parametrize("content", [b"\xc1garbage", b"", msgpack.packb({"not": "a list"}), b"\x93\x01"])
def test_corrupt_file_is_quarantined_not_lost(spool, content):
    good_before = spool.append([msg(1)])
    bad_name = "00000000000000000002-0000001-000000001.mp"
    bad_path = os.path.join(spool.directory, bad_name)
    with open(bad_path, "wb") as fh:
        fh.write(content)
    good_after = spool.append([msg(3)])
    items = spool.pending()
    assert bad_name in [f.name for f in items]
    results = {f.name: spool.read(f) for f in items}
    assert results[bad_name] is None
    assert results[good_before] == [msg(1)] and results[good_after] == [msg(3)]
    # moved aside with its content intact, no longer pending
    assert not os.path.exists(bad_path)
    with open(os.path.join(spool.bad_directory, bad_name), "rb") as fh:
        assert fh.read() == content
    assert bad_name not in [f.name for f in spool.pending()]
    assert spool.depth() == 2


def test_read_of_a_vanished_file_is_none_and_not_quarantined(spool):
    spool.append([msg(1)])
    (item,) = spool.pending()
    os.unlink(item.path)
    assert spool.read(item) is None
    assert not os.path.exists(spool.bad_directory)


def test_remove_only_the_given_files(spool):
    names = [spool.append([msg(i)]) for i in range(4)]
    items = spool.pending()
    spool.remove(items[:2])
    assert [f.name for f in spool.pending()] == names[2:]
    spool.remove(items[:2])  # removing twice is harmless
    assert spool.depth() == 2


def test_messages_keep_non_msgpack_types_readable(spool):
    spool.append([{"t": "ret", "load": {"return": {1, 2}, "tuple": (1, "a"), "obj": object}}])
    (item,) = spool.pending()
    (got,) = spool.read(item)
    assert sorted(got["load"]["return"]) == [1, 2]
    assert got["load"]["tuple"] == [1, "a"]
    assert isinstance(got["load"]["obj"], str)


def test_no_fsync_mode_still_works(tmp_path):
    s = Spool(str(tmp_path / "s"), fsync=False)
    s.append([msg(1)])
    assert [s.read(f) for f in s.pending()] == [[msg(1)]]
