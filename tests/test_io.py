"""helpers.io: temporaries named after their writer, stale-only clean-up, file modes,
errors naming the path, locks; helpers.outputs: all-or-nothing run outputs, output-folder
checks."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from helpers import io as hio
from helpers import outputs as hout
from helpers.io import (
    atomic_create,
    atomic_write,
    host_token,
    parse_temporary,
    read_lock,
    remove_stale_temporaries,
    try_lock,
    write_json,
    write_text,
)
from helpers.outputs import (
    OutputDirError,
    begin_outputs,
    check_writable_dir,
    commit_outputs,
    staged_outputs,
)


def _dead_pid() -> int:
    """The pid of a process that has just exited."""
    proc = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    return int(proc.stdout)


def _age(path: Path, seconds: float) -> None:
    stamp = time.time() - seconds
    os.utime(path, (stamp, stamp))


# -- temporaries ------------------------------------------------------------------------


def test_a_temporary_is_named_after_its_writer(tmp_path):
    seen: list[str] = []

    def write(tmp: str) -> None:
        seen.append(tmp)
        Path(tmp).write_text("x")

    atomic_write(tmp_path / "metrics.json", write)
    name = Path(seen[0]).name
    assert Path(seen[0]).parent == tmp_path
    assert name.startswith(f".metrics.json.{host_token()}.{os.getpid()}.")
    assert name.endswith(".tmp")
    assert parse_temporary(name) == ("metrics.json", host_token(), os.getpid())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]


def test_parse_temporary_rejects_the_old_format():
    assert parse_temporary(".chunk_00001.npy.k2x_9abc.tmp") is None
    assert parse_temporary("chunk_00001.npy") is None


def test_remove_stale_temporaries_removes_only_provably_stale_ones(tmp_path):
    host, dead = host_token(), _dead_pid()
    files = {
        "live": f".a.json.{host}.{os.getpid()}.0000aaaa.tmp",  # this process: alive
        "dead": f".a.json.{host}.{dead}.0000bbbb.tmp",  # this host, gone
        "other_fresh": ".a.json.other-host.1.0000cccc.tmp",  # cannot be judged: kept
        "other_old": ".a.json.other-host.1.0000dddd.tmp",  # old: stale whoever wrote it
        "live_old": f".b.json.{host}.{os.getpid()}.0000eeee.tmp",
        "legacy_fresh": ".c.json.k2x_9abc.tmp",  # old name format: by age only
        "legacy_old": ".c.json.q8w_1xyz.tmp",
        "result": "a.json",  # not a temporary
        "hidden": ".keep",
    }
    for name in files.values():
        (tmp_path / name).write_text("x")
    for key in ("other_old", "live_old", "legacy_old"):
        _age(tmp_path / files[key], 7200)
    (tmp_path / ".a_folder.tmp").mkdir()  # only files are removed
    removed = remove_stale_temporaries(tmp_path, max_age_s=3600)
    gone = {"dead", "other_old", "live_old", "legacy_old"}
    assert removed == sorted(tmp_path / files[key] for key in gone)
    left = {p.name for p in tmp_path.iterdir()}
    assert left == {name for key, name in files.items() if key not in gone} | {".a_folder.tmp"}


def test_a_process_we_may_not_signal_counts_as_alive(tmp_path, monkeypatch):
    name = f".a.json.{host_token()}.4242.0000aaaa.tmp"
    (tmp_path / name).write_text("x")

    def denied(pid: int, sig: int) -> None:
        raise PermissionError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(hio.os, "kill", denied)
    assert remove_stale_temporaries(tmp_path) == []
    assert (tmp_path / name).exists()


def test_a_killed_process_not_yet_reaped_counts_as_gone(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        name = f".a.json.{host_token()}.{proc.pid}.0000aaaa.tmp"
        (tmp_path / name).write_text("x")
        assert remove_stale_temporaries(tmp_path) == []  # running
        proc.kill()
        deadline = time.monotonic() + 10
        while not remove_stale_temporaries(tmp_path):  # a zombie until waited for
            assert time.monotonic() < deadline, "the zombie's temporary was kept"
            time.sleep(0.01)
        assert not (tmp_path / name).exists()
    finally:
        proc.kill()
        proc.wait()


def test_remove_stale_temporaries_edge_cases(tmp_path):
    assert remove_stale_temporaries(tmp_path / "missing") == []
    with pytest.raises(ValueError, match=r"max_age_s: expected a non-negative number.*-1"):
        remove_stale_temporaries(tmp_path, max_age_s=-1)
    with pytest.raises(ValueError, match="max_age_s"):
        remove_stale_temporaries(tmp_path, max_age_s=float("nan"))


# -- modes and errors -------------------------------------------------------------------


@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_files_get_the_mode_open_would_give(tmp_path, umask):
    old = os.umask(umask)
    try:
        write_text(tmp_path / "metrics.json", "{}")
        atomic_write(tmp_path / "run.trec", lambda tmp: Path(tmp).write_bytes(b"q0 Q0 d 1 1 r\n"))
        with open(tmp_path / "plain.txt", "w") as handle:  # the reference
            handle.write("x")
    finally:
        os.umask(old)
    expected = 0o666 & ~umask
    for name in ("metrics.json", "run.trec", "plain.txt"):
        assert (tmp_path / name).stat().st_mode & 0o777 == expected, name


def test_a_full_disk_names_the_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "out" / "per_query.csv"
    write_text(target, "previous\n")

    def write(tmp: str) -> None:
        with open(tmp, "w") as handle:
            handle.write("half")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError) as caught:
        atomic_write(target, write)
    err = caught.value
    assert type(err) is OSError and err.errno == errno.ENOSPC
    assert str(target) in str(err) and "No space left on device" in str(err)
    assert isinstance(err.__cause__, OSError)
    assert target.read_text() == "previous\n"
    assert sorted(p.name for p in target.parent.iterdir()) == ["per_query.csv"]


def test_the_error_type_is_kept(tmp_path):
    def write(tmp: str) -> None:
        raise PermissionError(errno.EACCES, "Permission denied")

    with pytest.raises(PermissionError, match=r"metrics\.json: could not write \(Permission"):
        atomic_write(tmp_path / "metrics.json", write)
    assert list(tmp_path.iterdir()) == []


def test_write_text_and_json_flush_before_the_rename(tmp_path, monkeypatch):
    synced: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    def replace(src, dst) -> None:
        assert any(Path(s).name == Path(src).name for s in synced), "renamed before fsync"
        real_replace(src, dst)

    monkeypatch.setattr(hio.os, "fsync", fsync)
    monkeypatch.setattr(hio.os, "replace", replace)
    write_json(tmp_path / "metrics.json", {"ndcg@10": 0.5, "é": 1})
    assert json.loads((tmp_path / "metrics.json").read_text(encoding="utf-8")) == {
        "ndcg@10": 0.5,
        "é": 1,
    }
    assert (tmp_path / "metrics.json").read_text(encoding="utf-8").endswith("}\n")


# -- atomic_create and locks ----------------------------------------------------------


def test_atomic_create_lets_exactly_one_writer_create_the_file(tmp_path):
    target = tmp_path / "meta.json"
    results: list[bool] = []
    barrier = threading.Barrier(8)

    def writer(n: int) -> None:
        barrier.wait()
        results.append(atomic_create(target, lambda tmp: Path(tmp).write_text(f"writer {n}")))

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [False] * 7 + [True]
    assert target.read_text().startswith("writer ")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["meta.json"]


def test_a_lock_is_exclusive_while_its_holder_lives(tmp_path):
    path = tmp_path / ".chunk_00000.lock"
    lock = try_lock(path)
    assert lock is not None
    owner = read_lock(path)
    assert owner is not None and (owner.host, owner.pid) == (host_token(), os.getpid())
    assert try_lock(path) is None  # held by a live process (this one)
    lock.release()
    assert not path.exists()
    again = try_lock(path)
    assert again is not None and again.token != lock.token


def test_a_dead_or_silent_holders_lock_is_taken_over(tmp_path):
    dead = tmp_path / "dead.lock"
    dead.write_text(json.dumps({"host": host_token(), "pid": _dead_pid(), "token": "t"}))
    assert try_lock(dead) is not None
    remote = tmp_path / "remote.lock"
    remote.write_text(json.dumps({"host": "other-host", "pid": 1, "token": "t"}))
    assert try_lock(remote, stale_after_s=60) is None  # refreshed recently: alive
    _age(remote, 120)
    taken = try_lock(remote, stale_after_s=60)
    assert taken is not None and read_lock(remote).token == taken.token


def test_refresh_keeps_a_lock_alive_and_release_spares_a_successor(tmp_path):
    path = tmp_path / "x.lock"
    lock = try_lock(path)
    assert lock is not None
    _age(path, 120)
    lock.refresh()
    assert time.time() - path.stat().st_mtime < 5
    _age(path, 120)  # silent: a writer on another host takes it over
    path.write_text(json.dumps({"host": "other-host", "pid": 1, "token": "successor"}))
    lock.release()  # no longer ours: left alone
    assert read_lock(path).token == "successor"


# -- output folders -------------------------------------------------------------------


def test_check_writable_dir_creates_a_missing_folder(tmp_path):
    target = tmp_path / "results" / "run1"
    assert check_writable_dir(target, "output_dir") == target
    assert target.is_dir() and list(target.iterdir()) == []


def test_check_writable_dir_rejects_a_file(tmp_path):
    target = tmp_path / "results"
    target.write_text("not a folder")
    with pytest.raises(OutputDirError, match=rf"output_dir: {target} is a file") as caught:
        check_writable_dir(target, "output_dir")
    assert isinstance(caught.value, ValueError)


def test_check_writable_dir_rejects_a_folder_it_cannot_create(tmp_path):
    (tmp_path / "file").write_text("x")
    target = tmp_path / "file" / "results"
    with pytest.raises(OutputDirError, match=rf"output_dir: cannot create the folder {target}"):
        check_writable_dir(target, "output_dir")


def test_check_writable_dir_rejects_a_read_only_folder(tmp_path, monkeypatch):
    real_open = os.open

    def read_only(path, flags, *args, **kwargs):
        if flags & os.O_CREAT:
            raise OSError(errno.EROFS, "Read-only file system")
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(hout.os, "open", read_only)
    with pytest.raises(
        OutputDirError, match=rf"cache_dir: cannot write in the folder {tmp_path} \(Read-only"
    ):
        check_writable_dir(tmp_path, "cache_dir")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a read-only folder anyway")
def test_check_writable_dir_rejects_a_folder_without_write_permission(tmp_path):
    target = tmp_path / "locked"
    target.mkdir(mode=0o555)
    with pytest.raises(OutputDirError, match=r"output_dir: cannot write in the folder"):
        check_writable_dir(target, "output_dir")


def _write_outputs(folder: Path, tag: str) -> None:
    (folder / "index").mkdir()
    (folder / "index" / "index.faiss").write_text(f"index {tag}")
    write_json(folder / "metrics.json", {"run": tag})
    write_text(folder / "per_query.csv", f"query,{tag}\n")


def _tree(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): p.read_text() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def test_a_failed_run_leaves_the_previous_outputs_untouched(tmp_path):
    out = tmp_path / "results"
    with staged_outputs(out) as staging:
        _write_outputs(staging, "good")
    good = _tree(out)
    assert good == {
        "index/index.faiss": "index good",
        "metrics.json": '{\n  "run": "good"\n}\n',
        "per_query.csv": "query,good\n",
    }
    with pytest.raises(RuntimeError, match="search failed"), staged_outputs(out) as staging:
        (staging / "index").mkdir()  # a new, empty index ...
        raise RuntimeError("search failed")  # ... and then the run fails
    assert _tree(out) == good
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results"]  # staging discarded
    # a run killed before its commit (no clean-up at all): the same
    staging = begin_outputs(out)
    (staging / "metrics.json").write_text("{}")
    assert _tree(out) == good


def test_a_commit_replaces_the_outputs_all_together(tmp_path):
    out = tmp_path / "results"
    first = begin_outputs(out)
    _write_outputs(first, "old")
    (first / "run.trec").write_text("old run\n")
    assert commit_outputs(first, out) == out
    second = begin_outputs(out)
    assert second.parent == tmp_path and second.name.startswith(".results.staging-")
    assert list(second.iterdir()) == []
    _write_outputs(second, "new")
    commit_outputs(second, out)
    assert _tree(out) == {
        "index/index.faiss": "index new",
        "metrics.json": '{\n  "run": "new"\n}\n',
        "per_query.csv": "query,new\n",
    }  # run.trec of the old run is gone
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results"]


def test_stale_staging_is_removed_and_a_live_one_kept(tmp_path):
    out = tmp_path / "results"
    dead = tmp_path / f".results.staging-{host_token()}-{_dead_pid()}-0000aaaa"
    live = tmp_path / f".results.staging-{host_token()}-{os.getpid()}-0000bbbb"
    remote = tmp_path / ".results.staging-other-host-1-0000cccc"
    for folder in (dead, live, remote):
        folder.mkdir()
        (folder / "metrics.json").write_text("{}")
    staging = begin_outputs(out)
    assert not dead.exists()
    assert live.is_dir() and remote.is_dir()  # a run in progress, here or elsewhere
    assert staging.is_dir() and staging not in (live, remote)


@pytest.mark.parametrize("left", ["old", "ready"])
def test_a_commit_interrupted_between_its_renames_is_recovered(tmp_path, left):
    """Killed after moving the previous outputs aside (``old``) or after marking the new
    ones complete (``ready``) but before either reached ``results``."""
    out = tmp_path / "results"
    leftover = tmp_path / f".results.{left}-{host_token()}-{_dead_pid()}-0000aaaa"
    leftover.mkdir()
    _write_outputs(leftover, left)
    staging = begin_outputs(out)  # recovers first
    assert _tree(out)["per_query.csv"] == f"query,{left}\n"
    assert not leftover.exists()
    staging.rmdir()


def test_commit_outputs_checks_its_arguments(tmp_path):
    out = tmp_path / "results"
    stray = tmp_path / "somewhere"
    stray.mkdir()
    with pytest.raises(ValueError, match=r"staging: .*somewhere is not a staging folder of"):
        commit_outputs(stray, out)
    staging = begin_outputs(out)
    commit_outputs(staging, out)
    with pytest.raises(ValueError, match="does not exist"):
        commit_outputs(staging, out)
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputDirError, match="output_dir: .*file is a file"):
        begin_outputs(tmp_path / "file")
