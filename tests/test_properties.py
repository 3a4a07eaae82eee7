"""Property-based tests over random small problems (issue 15): no crash, no NaN/inf in any
output, parameter or history entry, identical save/load round trips. A bounded, derandomised
sample here (about a minute); ``benchmarks/soak.py`` runs thousands. Problems and properties
are in ``tests/properties.py``."""

from hypothesis import HealthCheck, given, settings

from properties import check_problem, problems


@settings(max_examples=120, derandomize=True, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(problems())
def test_random_problems_fit_score_predict_sample_and_round_trip(problem):
    assert check_problem(problem) == []
