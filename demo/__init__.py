"""The main job on embedded defaults: the whole pipeline against local stand-ins, no cloud account needed."""
