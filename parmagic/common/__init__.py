"""Leaves that every layer may use: parmagic's errors, the one adapter of
joblib's and loky's private names, the walker of what a function depends
on, and small helpers. Nothing here imports the rest of parmagic.
"""
