"""``pipeplug dev``: plan and execute a whole deployment locally, the way piped does.

One module per job: ``appconfig`` reads the app config, ``sources`` snapshots
the application directory, ``launcher`` starts plugins with piped's argv,
``registry`` routes stages, ``pluginservice`` is the PluginService plugins call,
``state`` keeps everything in SQLite, ``planner`` and ``scheduler`` follow
piped's controller, ``ui`` renders it, ``runner`` ties one run together and
``cli`` is the click front end.
"""

import os as _os

#: where ``pipeplug dev`` keeps its state unless told otherwise (relative to the working directory)
DEFAULT_STATE = _os.path.join(".pipeplug", "dev.sqlite")
