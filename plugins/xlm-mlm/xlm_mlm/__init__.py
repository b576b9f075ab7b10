"""xlm-mlm: a masked language model decoded by mask-predict, confidence or threshold unmasking.

The entry module is :mod:`xlm_mlm.plugin`; it stays torch-free. Components live in
``model``, ``loss``, ``collator`` and ``predictor`` and are imported on first use.
"""

__version__ = "0.2.0"
