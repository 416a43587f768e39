"""The file format: attribute names and their values, health, the space encoding."""
