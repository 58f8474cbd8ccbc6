"""Off switches for parmagic's accelerations.

Each acceleration does what a plainer way does, only faster; a user who
hits a bug in one turns it off and goes on, with the same results:
``%config ParMagic.<name> = False`` in IPython, or
``parmagic.switches.<name> = False`` from Python. A run reads them as it
starts (a pool whose workers were started otherwise is replaced).
"""


class Switches:
    """Which accelerations are on (all are, by default)."""

    __slots__ = ("capture_output", "direct_channels", "shared_memory", "write_watch",
                 "pickle_reuse", "batch_scheduling")

    # name -> what turning it off does, for the README, %config and repr
    EFFECTS = {
        "capture_output": "an item's print and stderr output is not captured per "
                          "item: it goes where the worker's own output goes",
        "direct_channels": "chunks go through loky's executor instead of a socket "
                           "to each worker (about 1 ms a round trip instead of 0.1)",
        "shared_memory": "large numpy arrays are pickled to the workers instead of "
                         "shared through /dev/shm",
        "write_watch": "an unchanged large array is hashed again on every run "
                       "instead of asking Linux whether its pages were written",
        "pickle_reuse": "an unchanged notebook function is pickled (and unpickled "
                        "by the workers) again on every run",
        "batch_scheduling": "Linux workers keep the normal scheduling policy "
                            "instead of SCHED_BATCH",
    }

    def __init__(self):
        for name in self.__slots__:
            setattr(self, name, True)

    def __setattr__(self, name, value):
        if name not in self.__slots__:
            raise AttributeError(
                f"no switch {name!r}: the switches are {', '.join(self.__slots__)}")
        if not isinstance(value, bool):
            raise TypeError(f"switches.{name} must be True or False, not {value!r}")
        object.__setattr__(self, name, value)

    def __repr__(self):
        return "Switches(" + ", ".join(f"{name}={getattr(self, name)}"
                                       for name in self.__slots__) + ")"


switches = Switches()
