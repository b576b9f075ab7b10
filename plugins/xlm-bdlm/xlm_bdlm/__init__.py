"""xlm-bdlm: block diffusion (Arriola et al. 2025, arXiv 2503.09573), convertible from an ARLM.

Blocks of B tokens are generated left to right, each by masked diffusion conditioned on
the clean blocks before it, with a KV cache of the finished blocks. The entry module is
:mod:`xlm_bdlm.plugin`; it stays torch-free. Components live in ``model``, ``loss``,
``collator`` and ``predictor`` (with ``layout``, ``attention``, ``corruption`` and
``passes``) and are imported on first use.
"""

__version__ = "0.2.0"
