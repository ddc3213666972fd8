import pipeplug

plugin = pipeplug.App("only")
plugin.stage("ONLY")(lambda: None)
