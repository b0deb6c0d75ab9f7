"""The gateway's configuration: one TOML file, validated into frozen attrs objects."""
