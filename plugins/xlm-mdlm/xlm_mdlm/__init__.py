"""xlm-mdlm: a masked diffusion language model (Sahoo et al. 2024, arXiv 2406.07524).

The entry module is :mod:`xlm_mdlm.plugin`; it stays torch-free. Components live in
``model``, ``loss``, ``collator`` and ``predictor`` (and the noise schedule in
``schedule``) and are imported on first use.
"""

__version__ = "0.2.0"
