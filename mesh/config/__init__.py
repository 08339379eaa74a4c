"""mesh.yaml -> a typed, validated MeshConfig; every error names the file, line and key path.

Importing this package loads neither the Pregel engine nor a database driver.
"""

from mesh.config.models import (
    DEFAULT_CONFIG,
    AgentConfig,
    MeshConfig,
    SkillConfig,
    ToolConfig,
    find_config,
    load_config,
)
from mesh.errors import ConfigError

__all__ = ["DEFAULT_CONFIG", "AgentConfig", "ConfigError", "MeshConfig", "SkillConfig", "ToolConfig", "find_config", "load_config"]
