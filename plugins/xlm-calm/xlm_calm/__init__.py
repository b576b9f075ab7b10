"""xlm-calm: continuous autoregressive language models (Shao et al. 2025, arXiv 2510.27688).

A variational autoencoder compresses each chunk of K tokens into one vector (stage 1);
a causal transformer with an energy-based head predicts the next chunk's vector from
the chunks before it, trained with the energy score (stage 2), and each predicted
vector is decoded back into K tokens. The entry module is :mod:`xlm_calm.plugin`; it
stays torch-free. Components live in ``model``, ``loss``, ``collator`` and
``predictor`` (with ``layout``, ``autoencoder``, ``generator``, ``energy`` and
``pool``) and are imported on first use.
"""

__version__ = "0.2.0"
