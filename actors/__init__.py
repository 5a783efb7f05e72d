"""Thin Ray actors, one role per file; each delegates to the library in `opd_ray/`."""
