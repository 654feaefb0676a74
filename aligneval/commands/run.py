"""Placeholder until the run command lands."""


def register(app):
    return None
