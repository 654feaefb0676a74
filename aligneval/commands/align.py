"""Placeholder until the align command lands."""


def register(app):
    return None
