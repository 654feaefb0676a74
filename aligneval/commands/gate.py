"""Placeholder until the gate command lands."""


def register(app):
    return None
