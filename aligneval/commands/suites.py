"""Placeholder until the suites command lands."""


def register(app):
    return None
