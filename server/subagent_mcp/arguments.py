"""Checks on what a caller passed, each failing with an ``InputError`` a person can act on."""

from __future__ import annotations

from pydantic import ValidationError

from .errors import InputError


def in_range(name: str, value: float | None, low: float, high: float) -> None:
    """Refuse ``value`` outside ``[low, high]``, saying the range; None means "not given" and passes."""
    if value is not None and not low <= value <= high:
        raise InputError(f"{name} must be between {low:g} and {high:g}, got {value:g}")


def check_ceilings(max_cost_usd: float | None, max_total_tokens: int | None) -> None:
    """A run's cost and token ceilings, when given, must be positive and sane."""
    in_range("max_cost_usd", max_cost_usd, 1e-9, 1e9)
    in_range("max_total_tokens", max_total_tokens, 1, 1e12)


def require_text(value: str, name: str) -> str:
    """The text, stripped; empty or blank is refused."""
    if not value or not value.strip():
        raise InputError(f"{name} is empty; describe what should be done")
    return value.strip()


def first_error(exc: ValidationError) -> str:
    """The first validation error as "where: what", without pydantic's URL and input echo."""
    err = exc.errors(include_url=False, include_input=False)[0]
    where = ".".join(str(p) for p in err["loc"])
    message = str(err["msg"]).removeprefix("Value error, ")
    return f"{where}: {message}" if where else message
