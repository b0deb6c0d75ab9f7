"""The gateway's configuration: one TOML file, validated into frozen attrs objects.

:func:`load_config` reads a file and :func:`parse_config` validates text; both
raise :class:`ConfigError` listing every problem with its key path.
"""

from lvgateway.config.model import GatewayConfig, phone_key
from lvgateway.config.parse import load_config, parse_config
from lvgateway.config.reader import ConfigError, Problem
from lvgateway.config.secret import Secret, shorten

__all__ = [
    "ConfigError",
    "GatewayConfig",
    "Problem",
    "Secret",
    "load_config",
    "parse_config",
    "phone_key",
    "shorten",
]
