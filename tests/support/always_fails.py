"""A suite that always fails: the pipeline tests point the test stage at it (not collected by the main run)."""


def test_this_suite_fails() -> None:
    raise AssertionError("this suite fails on purpose")
