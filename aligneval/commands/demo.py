"""Placeholder until the demo command lands."""


def register(app):
    return None
