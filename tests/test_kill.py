"""Nothing lost on a kill: SIGKILL a checkpointing fit inside epochs and inside checkpoint
writes, one process and two gloo processes; every resume ends bit-identical (float64) to the
uninterrupted run and the checkpoint is never left unreadable (issue 15).

A few kill points here (about two minutes on 2 cores); ``benchmarks/killtest.py`` runs every
event at every occurrence. The harness is ``tests/killfit.py``.
"""

import pytest

from killfit import identical, kill_and_resume, reference

SINGLE = ["minibatch:4", "write-partial:2", "write-before-rename:1", "write-after-rename:2"]
DISTRIBUTED = [("minibatch:5", 1), ("write-partial:2", 0)]


@pytest.fixture(scope="module")
def ref1(tmp_path_factory):
    return reference(tmp_path_factory.mktemp("ref1"), 1)


@pytest.fixture(scope="module")
def ref2(tmp_path_factory):
    return reference(tmp_path_factory.mktemp("ref2"), 2)


def _check(r, ref):
    assert r["killed"], f"{r['kill']} never happened"
    assert r["leftovers"] == []  # temporary files of the killed write were removed
    assert identical(r["final"], ref), r["kill"]


@pytest.mark.parametrize("kill", SINGLE)
def test_single_process_fit_killed_resumes_identically(kill, ref1, tmp_path):
    _check(kill_and_resume(tmp_path, 1, kill), ref1)


@pytest.mark.parametrize("kill, rank", DISTRIBUTED)
def test_two_process_fit_killed_resumes_identically(kill, rank, ref2, tmp_path):
    _check(kill_and_resume(tmp_path, 2, kill, kill_rank=rank), ref2)
