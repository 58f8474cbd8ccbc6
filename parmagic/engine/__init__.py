"""The plain-Python engine the magics call: ``pmap``/``run``/``start``, the
backends, the loky pool and its warm copy, chunking, collecting, retries,
limits and the result cache.
"""
