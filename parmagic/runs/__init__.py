"""The record of a run (``ParmapRecord``), its timing summary and timeline,
and background runs.
"""
