# requirements:
# pyyaml>=6

"""Read a YAML configuration and report its top-level sections (needs PyYAML)."""

import yaml


def main(config: str = "service: api\nreplicas: 3\nports: [80, 443]\n") -> dict:
    """Parse YAML text and describe it.

    Args:
        config: the YAML document
    """
    data = yaml.safe_load(config) or {}
    if not isinstance(data, dict):
        raise ValueError(f"expected a YAML mapping at the top level, got {type(data).__name__}")
    for key, value in data.items():
        print(f"{key}: {type(value).__name__}")
    return {"sections": sorted(data), "size": len(data)}
