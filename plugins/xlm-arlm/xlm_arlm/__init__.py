"""xlm-arlm: the autoregressive baseline family of xlm.

A causal rotary transformer trained with next-token cross-entropy on the target
tokens, decoded left to right with a KV cache. The entry module is
:mod:`xlm_arlm.plugin`; the components live in ``model``, ``loss``, ``collator``
and ``predictor`` and are imported only when used.
"""

__version__ = "0.2.0"
