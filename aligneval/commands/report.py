"""Placeholder until the report command lands."""


def register(app):
    return None
