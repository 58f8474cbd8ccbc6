"""How parmagic shows things in a notebook or terminal: tracebacks without
parmagic's frames, warnings, the progress bar and the live view of a
background run.
"""
