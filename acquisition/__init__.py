"""flexcap acquisition: rig and session models, supervisor, recorder, take files, CLI."""

__version__ = "0.1.0"
