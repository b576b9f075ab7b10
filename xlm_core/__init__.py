"""xlm: train, sample and evaluate non-autoregressive language models.

Importing this package is cheap: it never imports torch. Heavy entry points such
as :func:`load` are resolved on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.2.0"

#: Semantic version of the plugin API. A plugin declares the version it targets;
#: a different major version makes it ``incompatible``, a newer minor version
#: loads with a warning. See docs/plugins.md ("Versioning").
PLUGIN_API_VERSION = "1.4.0"

if TYPE_CHECKING:  # pragma: no cover
    from xlm_core.pipeline import Pipeline


def load(path: Any, **kwargs: Any) -> Pipeline:
    """Load a checkpoint directory into a ready :class:`~xlm_core.pipeline.Pipeline`."""
    from xlm_core.pipeline import load as _load

    return _load(path, **kwargs)


__all__ = ["PLUGIN_API_VERSION", "__version__", "load"]
