"""What runs in a worker process (or thread) for each chunk: the call loop,
its result message, output capture, time limits, seeding, and what a worker
keeps between chunks. Light on purpose: no IPython, tqdm, run record or
static mutation pass is imported here.
"""
