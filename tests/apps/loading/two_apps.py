import pipeplug

first = pipeplug.App("first")
second = pipeplug.App("second")
