"""``pipeplug run tests/apps/loading/relpkg/plugin.py`` must resolve ``from .stages import ...``."""

import pipeplug

from .stages import STAGE

app = pipeplug.App("relative")
app.stage(STAGE)(lambda: None)
