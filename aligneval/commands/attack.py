"""Placeholder until the attack command lands."""


def register(app):
    return None
