"""A callback module whose import raises, for the import_fails.yaml config."""

raise RuntimeError("this module fails on purpose when imported")


def callback(container):
    return {}
