"""Model backends: the Anthropic API, and a scripted double for tests and demos."""

from .base import ModelBackend

__all__ = ["ModelBackend"]
