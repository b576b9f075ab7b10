"""Shared neural building blocks: the rotary transformer, KV cache and sampling utilities.

Import the submodules (``xlm_core.nn.transformer``, ``xlm_core.nn.sampling``)
directly; this package file stays torch-free.
"""
