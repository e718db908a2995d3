"""Methods that ship with simmm (imported as ``simmm.methods``); each registers itself with ``@register_method``.

* :mod:`simmm.methods.smm`: similarity min-max, zero-shot (players ``day``, ``darkener``, ``extractor``).
* :mod:`simmm.methods.dania`: DANIA, paired day–night (players ``generator``, ``discriminators``).
"""
from simmm.methods import dania, smm  # noqa: F401
