"""The AIMD controller: rate limits halve the calls in flight once per round, successes win them back."""

from __future__ import annotations

import pytest

from subagent_mcp.core.concurrency import AimdController, Ticket


def fill(controller: AimdController, n: int) -> list[Ticket]:
    tickets: list[Ticket] = []
    for _ in range(n):
        assert controller.can_start(0.0)
        tickets.append(controller.start())
    return tickets


def test_it_starts_at_the_ceiling_and_refuses_one_more_call() -> None:
    controller = AimdController(ceiling=4)
    fill(controller, 4)
    assert not controller.can_start(0.0)


def refuse_the_last_of_a_full_pool(controller: AimdController) -> bool:
    """Fill the pool to its limit, refuse the last call and end the rest; True if that cut the limit."""
    *others, last = fill(controller, controller.limit)
    cut = controller.overloaded(last, now=0.0)
    for ticket in others:
        controller.finished(ticket)
    return cut


def test_a_rate_limit_halves_the_limit_and_repeated_ones_stop_at_the_floor() -> None:
    controller = AimdController(ceiling=16)
    limits: list[int] = []
    for _ in range(6):
        assert refuse_the_last_of_a_full_pool(controller)
        limits.append(controller.limit)
    assert limits == [8, 4, 2, 1, 1, 1]


def test_a_burst_of_rate_limits_from_calls_sent_together_cuts_once_to_below_the_first_refused() -> None:
    controller = AimdController(ceiling=16)
    tickets = fill(controller, 16)
    cut = [controller.overloaded(t, now=0.0) for t in reversed(tickets[4:])]  # the 16th answers first
    assert cut == [True] + [False] * 11
    assert (controller.limit, controller.cuts) == (4, 1)  # the 5th was refused: the API takes 4 at most
    controller.finished(tickets[0])
    (later,) = fill(controller, 1)  # sent after the cut: its 429 is news
    assert controller.overloaded(later, now=0.0)
    assert controller.limit == 2


def test_every_limit_successes_add_one_back_up_to_the_ceiling() -> None:
    controller = AimdController(ceiling=4)
    refuse_the_last_of_a_full_pool(controller)
    assert controller.limit == 2
    steps: list[int] = []
    for _ in range(2 + 3 + 5):
        (ticket,) = fill(controller, 1)
        controller.succeeded(ticket)
        steps.append(controller.limit)
    assert steps == [2, 3, 3, 3, 4, 4, 4, 4, 4, 4]


def test_the_limit_does_not_grow_while_a_refused_call_is_unanswered() -> None:
    controller = AimdController(ceiling=4)
    refuse_the_last_of_a_full_pool(controller)
    controller.refused_call()
    for _ in range(5):
        (ticket,) = fill(controller, 1)
        controller.succeeded(ticket)
    assert controller.limit == 2
    controller.refused_call_done()  # answered at last, or given up
    for _ in range(2):
        (ticket,) = fill(controller, 1)
        controller.succeeded(ticket)
    assert controller.limit == 3


def test_a_call_refused_while_alone_brings_the_limit_to_the_floor() -> None:
    controller = AimdController(ceiling=16, floor=2)
    (alone,) = fill(controller, 1)
    controller.overloaded(alone, now=0.0)
    assert controller.limit == 2


def test_retry_after_pauses_every_new_call_until_it_has_passed_capped() -> None:
    controller = AimdController(ceiling=8, max_pause_s=30.0)
    first, second = fill(controller, 2)
    controller.overloaded(first, now=100.0, retry_after_s=2.0)
    controller.finished(second)
    assert not controller.can_start(101.9)
    assert controller.pause_left(101.0) == pytest.approx(1.0)
    assert controller.can_start(102.0)
    second = controller.start()
    controller.overloaded(second, now=100.0, retry_after_s=600.0)  # a later, longer ask wins, up to the cap
    assert controller.pause_left(100.0) == pytest.approx(30.0)


def test_a_call_that_ended_with_another_error_moves_nothing_but_its_slot() -> None:
    controller = AimdController(ceiling=2)
    first, _ = fill(controller, 2)
    controller.finished(first)
    assert (controller.limit, controller.in_flight, controller.paused_until) == (2, 1, float("-inf"))


def test_a_fixed_controller_never_cuts_or_pauses() -> None:
    controller = AimdController(ceiling=4, adaptive=False)
    for ticket in fill(controller, 4):
        assert not controller.overloaded(ticket, now=0.0, retry_after_s=5.0)
    assert (controller.limit, controller.pause_left(0.0)) == (4, 0.0)


def test_ending_a_call_never_started_is_a_bug() -> None:
    with pytest.raises(RuntimeError, match="never started"):
        AimdController(ceiling=1).succeeded(Ticket(0))
