"""The shared-memory data plane: large arrays placed once in files the
workers map, and the watch on the pages they write.
"""
