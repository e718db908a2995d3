"""Methods that ship with simmm (imported as ``simmm.methods``); each registers itself with ``@register_method``.

* :mod:`simmm.methods.smm`: similarity min-max, zero-shot (players ``day``, ``darkener``, ``extractor``).
"""
from simmm.methods import smm  # noqa: F401
