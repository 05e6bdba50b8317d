import os

from lib.pools import context, process_pool, worker_count


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
