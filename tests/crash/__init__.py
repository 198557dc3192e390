"""Crash-safety harness (issue 8 part 2): hub jobs run in child processes that are killed with
SIGKILL at seeded points, then checked and re-run.

- ``hooks``: test-only self-kill hooks installed in the child (the hub has no crash hooks);
- ``runner``: the child's entry point (``python -m tests.crash.runner``);
- ``catalogue``: the kill points and their seeded sampling;
- ``checks``: "no watermark or delta token ahead of committed data", read from the real stores;
- ``snapshot``: the normalised end state of a world, for comparing a crashed run with a clean one;
- ``harness``: the world, the stages of the pipeline and the kill loop.
"""
