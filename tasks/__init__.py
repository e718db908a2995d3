"""Task adapters that ship with simmm (imported as ``simmm.tasks``).

Each adapter is built only on simmm's public API and registers itself with ``@register_task``; together they
are the worked examples of how to bring a new task to the engine.
"""
from simmm.tasks import action, classification, place_recognition, segmentation  # noqa: F401
