"""Where the project is."""

from pathlib import Path

#: The project's root directory (the one holding pyproject.toml).
PROJECT_DIR = Path(__file__).resolve().parents[2]
