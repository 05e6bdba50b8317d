import os
import subprocess
import sys
from pathlib import Path

from lib.common.pools import context, process_pool, worker_count


def test_worker_count_is_the_cores_this_process_may_use_unless_given():
    assert worker_count(3) == 3
    assert worker_count() == len(os.sched_getaffinity(0))


def _pid_and_square(x: int) -> tuple[int, int]:
    return os.getpid(), x * x


def test_pool_runs_in_forkserver_children():
    # Not fork: a fork of a process running threads can inherit a held lock and hang.
    assert context().get_start_method() == "forkserver"
    with process_pool(2) as pool:
        results = pool.map(_pid_and_square, range(6), chunksize=1)
    assert [square for _, square in results] == [0, 1, 4, 9, 16, 25]
    assert os.getpid() not in {pid for pid, _ in results}


_PRELOAD_SCRIPT = """
from lib.common.pools import context

context(preload=["json"])
with context().Pool(1) as pool:  # a later call without preload keeps json
    print(pool.apply(eval, ("' '.join(m for m in ('cv2', 'json', 'PIL', 'numpy') "
                            "if m in __import__('sys').modules)",)))
"""


def test_forkserver_children_get_the_decoders_and_requested_modules_already_imported():
    # imported in a worker itself, they cost it half a second of CPU and thousands of page
    # faults while a download runs; -c: a main module with no file, so the child imports
    # nothing else (eval, a builtin, needs no import to unpickle)
    done = subprocess.run(
        [sys.executable, "-c", _PRELOAD_SCRIPT],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert done.stdout.split() == ["cv2", "json", "PIL", "numpy"]


_MAIN_MODULE = """
from lib.common.pools import context

if __name__ == "__main__":
    with context(preload=[__spec__.name]).Pool(2) as pool:
        print(sum(pool.map(abs, [-1, -2])))
"""


def test_a_main_module_the_forkserver_preloaded_runs_in_its_workers_without_a_warning(tmp_path):
    # multiprocessing re-runs a `python -m` main module in every worker; runpy warns when the
    # module is in sys.modules already, as the download stage's preload puts it on purpose
    package = tmp_path / "stagepkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "job.py").write_text(_MAIN_MODULE)
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-m", "stagepkg.job"],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{root}"},
    )
    assert done.stdout.split() == ["3"]
    assert done.stderr == ""
