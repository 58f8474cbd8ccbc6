"""The IPython layer: ``%pmap``/``%%parmap``, their option parsing and
``%config ParMagic`` settings. It only parses and calls the engine.
"""
