"""Getting chunks to the workers and their results back: direct socket
channels to loky's workers, and precise errors for what cannot be pickled.
"""
