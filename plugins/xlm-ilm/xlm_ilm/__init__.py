"""xlm-ilm: the insertion language model family of xlm (Patel et al. 2025, arXiv 2505.05755).

A bidirectional rotary transformer reads ``[CLS] prompt [BOS] partial target``
and scores every (gap, token) insertion with one joint softmax; a stop head on
the CLS state decides when the sequence is complete. Generation inserts one
token per step (optionally several, into different gaps) until the stop head
fires. The entry module is :mod:`xlm_ilm.plugin`; the components live in
``model``, ``loss``, ``collator`` and ``predictor`` and are imported only when used.
"""

__version__ = "0.2.0"
