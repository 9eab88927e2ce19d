"""Test machinery shipped with the package: a fake Messages API and result helpers."""
