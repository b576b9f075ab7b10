"""The run configuration: one validated pydantic record per run, torch-free.

``RunConfig`` holds the plugin name, the task, the family's model config and
predictor settings, and the training and evaluation settings. It is built by
:func:`resolve_run_config` from, in order: the defaults, ``--preset NAME``,
``--config FILE`` and repeated ``--set a.b=value`` overrides. Every key and value
is checked before any work starts; a mistake is one line naming the key path and,
for a misspelt key, the closest valid one.

- ``schema``: ``RunConfig`` and its training and eval sections;
- ``task``: the task section, one record per kind of task (star, text, distilled, plugin);
- ``layers``: resolution (defaults, preset, file, ``--set``) and preset checks;
- ``keys``: key checking and ``--set`` parsing, with one-line errors;
- ``files``: reading config files and printing a resolved config;
- ``resume``: what a resumed run may change.
"""

from xlm_core.config.files import dump_config, load_config_file
from xlm_core.config.keys import parse_section_sets
from xlm_core.config.layers import (
    DEFAULT_PRESET,
    check_presets,
    override_run_config,
    override_section,
    resolve_run_config,
    validate_run_config,
)
from xlm_core.config.resume import FIXED_ON_RESUME, RESUMABLE_SECTIONS, resume_change_refused
from xlm_core.config.schema import (
    PRESET_SECTIONS,
    EvalConfig,
    RunConfig,
    TrainingConfig,
    run_config_class,
)
from xlm_core.config.task import (
    DISTILLED_TASK,
    STAR_TASKS,
    TEXT_TASK,
    AnyTaskConfig,
    DistilledTaskConfig,
    PluginTaskConfig,
    StarTaskConfig,
    TaskConfig,
    TextTaskConfig,
    task_config_class,
)

__all__ = [
    "DEFAULT_PRESET",
    "DISTILLED_TASK",
    "FIXED_ON_RESUME",
    "PRESET_SECTIONS",
    "RESUMABLE_SECTIONS",
    "STAR_TASKS",
    "TEXT_TASK",
    "AnyTaskConfig",
    "DistilledTaskConfig",
    "EvalConfig",
    "PluginTaskConfig",
    "RunConfig",
    "StarTaskConfig",
    "TaskConfig",
    "TextTaskConfig",
    "TrainingConfig",
    "check_presets",
    "dump_config",
    "load_config_file",
    "override_run_config",
    "override_section",
    "parse_section_sets",
    "resolve_run_config",
    "resume_change_refused",
    "run_config_class",
    "task_config_class",
    "validate_run_config",
]
