"""One package per container; services never import each other (see pyproject's
import-linter contracts). ``services.cli`` is ``mailctl``."""
