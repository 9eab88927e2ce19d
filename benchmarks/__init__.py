"""Scheduling benchmarks for the DAG executor: makespan against a lower bound, overhead, scale.

Not tests: run ``python -m benchmarks`` (see ``README.md``). ``run_task`` is pluggable, so the same
figures can be taken through a scripted backend or a fake Messages API.
"""
