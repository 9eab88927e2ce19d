"""The take-over rule of ``resume_run``, one for both store adapters: may this server take a stored run over, and
if not, what the refusal says. No I/O: whether another server still holds the run is judged before (``rows.held``).
"""

from __future__ import annotations


def takeover_refusal(
    run_id: str, status: str, owner: str | None, pid: int, *, held: bool, me: str, not_running_here: bool
) -> str | None:
    """Why server ``me`` may not take run ``run_id`` over, or None if it may.

    Only a ``running`` run is refused: one ``me`` owns, unless ``not_running_here`` (the caller knows it runs no
    such run: a store failure left the row running), and one another server still holds (``held``), named by
    its owner id or, for a row from before owner ids, its pid.
    """
    if status != "running":
        return None
    if owner == me:
        return None if not_running_here else f"Run {run_id!r} is still running in this server ({me})."
    if held:
        return (
            f"Run {run_id!r} is still running in server {owner or pid} (its lease is renewed while it runs); "
            "wait_run or cancel_run it instead."
        )
    return None
